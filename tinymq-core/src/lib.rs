//! The sans-IO core of the tinymq broker.
//!
//! Everything a broker decides lives here, and nothing it does to the
//! outside world: no sockets, files, threads, clocks or randomness. Bytes and
//! the current [`Instant`](std::time::Instant) go in; requests, bytes to send
//! and the next deadline come out. `tinymq-net` is the I/O shell that moves
//! them; tests drive the same code on a virtual clock.
//!
//! | module | owns |
//! |---|---|
//! | [`codec`] | the frame format: an incremental [`Decoder`] and [`Frame::encode`] |
//! | [`message`] | a published message as it is stored and delivered ([`Message`]) |
//! | [`topic`] | [`TopicName`], [`Filter`] and the [`SubscriptionTrie`] |
//! | [`session`] | the broker side of one binary connection ([`Session`]) |
//! | [`client`] | the client side of one binary connection ([`client::ClientSession`]) |
//! | [`router`] | namespaces, subscriptions, stored values, client ids ([`Router`]) |
//! | [`broker`] | what each session request does to the router ([`broker::execute`]) |
//! | [`mqtt`] | MQTT 3.1.1 and 5.0: the codec ([`mqtt::Packet`], [`mqtt::Decoder`], [`mqtt::encode`]), the broker side of a connection ([`mqtt::ServerSession`]) and its rules ([`mqtt::broker`]) |
//! | [`websocket`] | RFC 6455: the upgrade handshake, the frame codec, and a session's framing ([`websocket::link`]) |
//! | [`outbound`] | a connection's bounded queue of bytes to send |
//! | [`http`] | HTTP semantics: requests, the Moustique and plain APIs, responses, the web UI |
//! | [`nats`] | the NATS bridge's core: the NATS client protocol and [`nats::NatsClient`], topic ↔ subject mapping |
//! | [`metrics`] | the broker's figures and the store's commit-latency histogram, as plain data |
//! | [`store`] | what is kept across restarts: record formats, [`store::Store`] |
//! | `record` (private) | the byte reader of stored records, shared by [`store`] and [`auth`] |
//! | [`auth`] | users: the stored record, [`auth::Identity`], why credentials fail; the peer [`auth::AllowList`] and [`auth::PeerBudgets`] |
//!
//! # The run loop
//!
//! A shell keeps one [`Session`] per connection and one [`Router`] for the
//! broker. When bytes arrive it calls [`Session::handle_input`] until the
//! answer is [`Step::Incomplete`]; each [`Step::Request`] goes to
//! [`broker::execute`], whose [`broker::Effects`] name the sinks a published
//! message must reach. It writes [`Session::outbound`] to the socket, and
//! calls [`Session::handle_timeout`] at [`Session::poll_timeout`].
//!
//! ```
//! use std::time::Instant;
//! use tinymq_core::broker::{self, Origin};
//! use tinymq_core::{Frame, FrameType, NamespaceId, Router, Session, SessionConfig, Step};
//!
//! let mut router: Router<&str> = Router::new();
//! let now = Instant::now();
//! let mut session = Session::new(now, &SessionConfig::default());
//! let mut subscriber = None;
//!
//! // A client connects and subscribes, in one read.
//! let mut input = Frame::connect("sensor", b"").to_vec();
//! input.extend(Frame::with_topic(FrameType::Subscribe, "sensors/#").to_vec());
//! let mut used = 0;
//! while let Ok(Step::Request { consumed, request }) = session.handle_input(now, &input[used..]) {
//!     let origin = Origin { unix_time: 0, ip: None };
//!     let effects = broker::execute(&mut router, &mut session, subscriber, "sensor's sink", request, origin, |_| {
//!         Ok(NamespaceId::PUBLIC)
//!     });
//!     subscriber = subscriber.or(effects.connected);
//!     used += consumed;
//! }
//! assert!(session.is_connected());
//! assert_eq!(router.subscription_count(), 1);
//! // ConnAck and SubAck wait in the outbound queue for the shell to write.
//! assert!(!session.outbound().is_empty());
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod auth;
pub mod broker;
pub mod client;
pub mod codec;
pub mod http;
pub mod message;
pub mod metrics;
pub mod mqtt;
pub mod nats;
pub mod outbound;
mod record;
pub mod router;
pub mod session;
pub mod store;
pub mod topic;
pub mod websocket;

pub use codec::{DecodeError, Decoded, Decoder, Frame, FrameLimits, FrameType, ReasonCode};
pub use message::Message;
pub use outbound::Outbound;
pub use router::{Delivery, NamespaceId, RouteCache, Router, SubscriberId};
pub use session::{Closed, Credentials, Request, Session, SessionConfig, Step};
pub use topic::{Filter, SubscriptionTrie, TopicError, TopicLimits, TopicName};
