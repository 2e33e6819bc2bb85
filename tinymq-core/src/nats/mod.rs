//! The sans-IO core of the NATS bridge: the NATS client protocol, a client
//! state machine, and the mapping of tinymq topics to NATS subjects.
//!
//! | module | owns |
//! |---|---|
//! | `codec` | [`parse`] of server operations (INFO, MSG, HMSG, PING, PONG, +OK, -ERR), [`ClientOp::encode`] of client ones |
//! | `headers` | [`Headers`] of HPUB/HMSG, and the bridge's [`ORIGIN_HEADER`] and [`RETAIN_HEADER`] |
//! | `info` | [`ServerInfo`] from INFO's JSON, [`ConnectOptions`] to CONNECT's |
//! | `client` | [`NatsClient`]: handshake, subscriptions, keep-alive, server list and backoff |
//! | `mapping` | [`SubjectMapping`]: topics and filters to subjects and back, with the escaping scheme |
//! | `nkey` | [`NkeySeed`]: a user's NKEY seed, its public key, and the signature of the server's nonce; [`UserCreds`], a `.creds` file |
//!
//! # Calling order
//!
//! 1. [`NatsClient::new`] once; it outlives connections.
//! 2. When [`NatsClient::next_server`] names a server, dial it. When the
//!    socket is open call [`NatsClient::handle_connected`]; when dialing
//!    fails call [`NatsClient::handle_disconnected`].
//! 3. When bytes arrive call [`NatsClient::handle_input`] with them (the
//!    client keeps a partial operation itself). After INFO it queues
//!    CONNECT, a SUB for every subscription it holds, and PING; the PONG
//!    makes it [`NatsEvent::Connected`]. With [`NatsConfig::tls`] it
//!    waits after INFO instead: when [`NatsClient::wants_tls`] says so,
//!    start TLS on the socket and call [`NatsClient::handle_tls_started`],
//!    which queues the same.
//! 4. Write [`NatsClient::outbound_mut`]'s bytes to the socket after every
//!    call ([`crate::Outbound::front_slices`], then
//!    [`crate::Outbound::consume`] with what was written).
//! 5. Take [`NatsEvent`]s from [`NatsClient::poll_event`] until `None`.
//! 6. Call [`NatsClient::handle_timeout`] at [`NatsClient::poll_timeout`]
//!    (PING, the stale check, the handshake deadline), and when idle
//!    [`NatsClient::next_server`] too: the same deadline says when the next
//!    attempt is due.
//! 7. When a `handle_*` call fails, or the socket ends or fails, drop the
//!    socket and call [`NatsClient::handle_disconnected`], then go back
//!    to 2. Subscriptions stay; the next handshake sends them again.
//!
//! [`NatsClient::subscribe`] may be called at any time;
//! [`NatsClient::publish`] once CONNECT is queued, and it refuses (a drop
//! for the caller to count) when the outbound queue is full.
//!
//! ```
//! use std::time::Instant;
//! use tinymq_core::nats::{Headers, NatsClient, NatsConfig, NatsEvent};
//!
//! let now = Instant::now();
//! let mut client = NatsClient::new(NatsConfig::default(), now);
//! let sid = client.subscribe("tinymq.site1.>").unwrap();
//! assert_eq!(client.next_server(now), Some("127.0.0.1:4222"));
//! client.handle_connected(now);
//! client.handle_input(now, b"INFO {\"server_id\":\"N1\",\"headers\":true,\"max_payload\":1048576}\r\n").unwrap();
//! // CONNECT, SUB and PING wait in the outbound queue.
//! let mut slices = [&[][..]; 4];
//! let n = client.outbound().front_slices(&mut slices);
//! let sent: Vec<u8> = slices[..n].concat();
//! assert!(sent.starts_with(b"CONNECT {"));
//! assert!(sent.ends_with(b"\r\nSUB tinymq.site1.> 1\r\nPING\r\n"));
//! client.outbound_mut().consume(sent.len());
//!
//! client.handle_input(now, b"PONG\r\nHMSG tinymq.site1.a 1 30 32\r\nNATS/1.0\r\nTinymq-Retain: 1\r\n\r\nhi\r\n").unwrap();
//! assert!(matches!(client.poll_event(), Some(NatsEvent::Connected { .. })));
//! let Some(NatsEvent::Message(message)) = client.poll_event() else { panic!() };
//! assert_eq!((message.sid, &*message.subject, &message.payload[..]), (sid, "tinymq.site1.a", &b"hi"[..]));
//! assert!(message.headers.is_retained());
//!
//! client.publish("tinymq.site1.b", Some(&Headers::for_bridge("broker-1", false).unwrap()), b"42").unwrap();
//! ```

mod client;
mod codec;
mod headers;
mod info;
mod mapping;
mod nkey;
mod payload;

pub use client::{
    ConnectionError, NatsClient, NatsConfig, NatsEvent, NatsMessage, NatsStats, SendError, ServerErrorKind, Sid,
};
pub use codec::{
    ClientOp, DEFAULT_MAX_PAYLOAD, HEADER_VERSION, MAX_CONTROL_LINE, Msg, ParseError, ParseLimits, Parsed, ServerOp,
    SubjectError, check_subject, parse,
};
pub use headers::{HeaderError, Headers, ORIGIN_HEADER, RETAIN_HEADER, RETAIN_VALUE};
pub use info::{ConnectOptions, Credentials, InfoError, MAX_CONNECT_URLS, ServerInfo};
pub use mapping::{MappingError, SubjectMapping};
pub use nkey::{NkeyError, NkeyKind, NkeySeed, UserCreds};
pub use payload::Payload;
