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
//! | [`durable`] | sessions that outlive connections: QoS 1 queues, in-flight windows, expiry, wills ([`durable::Sessions`]) |
//! | [`router`] | namespaces, subscriptions, stored values, client ids ([`Router`]) |
//! | [`broker`] | [`broker::Broker`]: the broker-wide state (router, Moustique queues, peers' budgets) and every rule of connect, takeover, publish, subscribe, admission, throttling and when a write is answered; the router-level rules ([`broker::execute`]) |
//! | [`mqtt`] | MQTT 3.1.1 and 5.0: the codec ([`mqtt::Packet`], [`mqtt::Decoder`], [`mqtt::encode`]), the broker side of a connection ([`mqtt::ServerSession`]) and its rules ([`mqtt::broker`]), the bridge's client ([`mqtt::MqttClient`]) |
//! | [`websocket`] | RFC 6455: the upgrade handshake, the frame codec, a byte stream in binary messages ([`websocket::ByteStream`]) |
//! | [`publish`] | the one publish rule of every transport: stored value, Moustique queues, receivers, store write |
//! | [`outbound`] | a connection's bounded queue of bytes to send |
//! | [`http`] | HTTP semantics: requests, the Moustique and plain APIs, responses, the web UI |
//! | [`nats`] | the NATS bridge's core: the NATS client protocol and [`nats::NatsClient`], topic ↔ subject mapping |
//! | [`metrics`] | the broker's figures and the store's commit-latency histogram, as plain data |
//! | [`store`] | what is kept across restarts: record formats, [`store::Store`] |
//! | `reconnect` (private) | what the bridge's clients share across connections: the server list and its backoff, the partial packet held between reads |
//! | `record` (private) | the byte reader of stored records, shared by [`store`] and [`auth`] |
//! | [`auth`] | users: the stored record, [`auth::Identity`], why credentials fail; the peer [`auth::AllowList`] and [`auth::PeerBudgets`] |
//!
//! # The run loop
//!
//! A shell keeps one [`Session`] per connection and one
//! [`broker::Broker`]. When bytes arrive it calls [`Session::handle_input`]
//! until the answer is [`Step::Incomplete`]; each [`Step::Request`] goes to
//! the broker ([`broker::Broker::handle_connect`] once the credentials are
//! checked, [`broker::Broker::handle_request`] for the rest), whose
//! [`broker::Effects`] name the sinks a published message must reach and
//! the store write it makes. It writes [`Session::outbound`] to the socket,
//! and calls [`Session::handle_timeout`] at [`Session::poll_timeout`].
//!
//! The example below drives the router-level rule ([`broker::execute`])
//! on a bare [`Router`], as the scenario tests do.
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
//!
//! # Acknowledged delivery
//!
//! QoS 1 and persistent sessions add one more piece: a shell keeps a
//! [`durable::Sessions`] beside the router. A QoS 1 [`Request::Publish`] is
//! acknowledged with [`Session::ack`] once the message is safe; a message
//! routed to a QoS 1 subscription goes through [`durable::Sessions::enqueue`]
//! and out through [`Session::deliver_qos1`]; the client's
//! [`Request::PubAck`] goes to [`durable::Sessions::ack`]; the sessions'
//! store operations go to the store's writer. [`durable`] gives the order of
//! calls; `tests/qos.rs` and its `qos_shell` run the whole loop on a
//! virtual clock.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod auth;
pub mod broker;
pub mod client;
pub mod codec;
pub mod durable;
pub mod http;
pub mod message;
pub mod metrics;
pub mod mqtt;
pub mod nats;
pub mod outbound;
pub mod publish;
mod reconnect;
mod record;
pub mod router;
pub mod session;
pub mod store;
pub mod topic;
pub mod websocket;

pub use codec::{ConnectOptions, DecodeError, Decoded, Decoder, Frame, FrameLimits, FrameType, Qos, ReasonCode, Will};
pub use message::Message;
pub use outbound::Outbound;
pub use router::{Delivery, NamespaceId, RouteCache, Router, SubscriberId};
pub use session::{Closed, Credentials, Request, Session, SessionConfig, Step};
pub use topic::{Filter, SubscriptionTrie, TopicError, TopicLimits, TopicName};
