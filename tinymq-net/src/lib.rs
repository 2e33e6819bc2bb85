//! The I/O shell of the tinymq broker: a hand-rolled mio event loop that
//! drives `tinymq-core` over TCP, TLS and Unix sockets, the embedding API
//! and the network client.
//!
//! # Embedding a broker
//!
//! [`Broker::builder`] sets listeners and limits; [`BrokerBuilder::start`]
//! opens the listeners and starts the event-loop threads; [`Broker::client`]
//! gives in-process clients that publish, subscribe and receive with no
//! socket; [`Broker::shutdown`] sends every connection Disconnect 6 and
//! returns once every thread has stopped. See [`Broker`] for an example.
//!
//! # MQTT and WebSocket
//!
//! [`BrokerBuilder::listen_mqtt`] and [`BrokerBuilder::listen_mqtts`] add
//! MQTT 3.1.1/5.0 listeners ([`BrokerConfig::mqtt`] holds their session
//! settings); the HTTP listeners also upgrade `GET /mqtt` (MQTT) and
//! `GET /ws` (the binary protocol) to WebSocket. MQTT clients use the same
//! users, namespaces, limits and topic space as every other client.
//!
//! # Acknowledged delivery
//!
//! Binary-protocol clients may publish and subscribe at QoS 1 and keep a
//! persistent session with a will ([`ClientOptions::persistent_session`],
//! [`ClientOptions::will`], [`Client::publish_qos1`],
//! [`Client::subscribe_qos1`]). The rules are the core broker's durable
//! sessions; the loops carry them out: a session's QoS 1 messages go out
//! from the loop that owns its connection, its records go to the store's
//! writer, and under `immediate` [`Durability`] a PubAck waits for the
//! commit of the queued copies (the loop does not). Sessions and their
//! queued messages are loaded from the store at start, and the wills of
//! clients that were connected when the broker stopped are published.
//! [`BrokerBuilder::session_expiry`] and [`BrokerConfig::sessions`] set
//! their limits.
//!
//! In-process clients have sessions among them (one client-id space):
//! [`Broker::local_client`] with [`LocalOptions`] keeps one across drops
//! and restarts and acknowledges QoS 1 messages on receipt or with
//! [`LocalClient::ack`]; [`LocalClient::publish_qos1`] and
//! [`LocalClient::subscribe_qos1`]. A session's QoS 1 messages stay in it
//! until its client takes them; under `immediate` the calling thread, never
//! a loop, waits for the commit of a publish or an acknowledgement.
//!
//! # Who may connect
//!
//! [`BrokerConfig::allowed_peers`] refuses peers outside an allow-list as
//! they connect (401, or Disconnect 2), and [`BrokerConfig::peer_budget`]
//! throttles an address that keeps sending bad requests (wrong
//! credentials, unknown paths, malformed requests): its new connections
//! get 429 or Disconnect 2 until its budget refills. Both are decided
//! before a connection's first read; Unix-socket peers have no address
//! and are not checked.
//!
//! # The config file
//!
//! [`ConfigFile`] reads the `tinymq` command's TOML file into a
//! [`BrokerConfig`], for [`BrokerBuilder::config`].
//!
//! # Storage and users
//!
//! [`BrokerBuilder::data_dir`] keeps stored values, Moustique HTTP clients
//! with what is queued for their PICKUP, persistent sessions and users in
//! a redb database ([`RedbStore`], the file
//! [`DATABASE_FILE`]); [`Durability`] says when a write is durable.
//! [`new_user`] makes a user record (salted PBKDF2) for
//! [`BrokerBuilder::user`] or for the store. redb asserts on some damaged
//! files; the store catches that and returns [`StoreError::Damaged`], and
//! never replaces the process's panic hook (which still sees the panic).
//!
//! # TLS
//!
//! [`BrokerBuilder::tls`] gives the broker a certificate ([`ServerTls`]);
//! [`BrokerBuilder::listen_tls`] and [`BrokerBuilder::listen_https`] serve
//! the binary protocol and HTTP over it, and [`ClientOptions::tls`] makes
//! the network client speak TLS ([`ClientTls`]). rustls does the
//! cryptography with the ring provider; handshakes are driven by the event
//! loops like any other input, never by a thread or a blocking call.
//!
//! # Threads
//!
//! Each event loop is one thread with its own `mio::Poll` and a slab of
//! connections. Loop 0 accepts and spreads connections round robin. The
//! core's [`tinymq_core::broker::Broker`] (subscriptions, stored values,
//! Moustique queues, peers' budgets, and every rule) is shared behind one
//! read-write lock taken per request, never across I/O; a live publish
//! only reads it. A delivery to a connection on another loop goes into
//! that loop's inbox, with one wake per batch.
//!
//! Two kinds of helper thread keep slow work off the loops: the store's
//! writer, which groups writes into one commit per interval, and the
//! password verifiers. A request
//! that waits for either (a commit under immediate durability, a QoS 1
//! PubAck held for its commit, a password
//! not verified before) holds only its own connection; the answer comes
//! back through the loop's inbox.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod bridge;
mod broker;
mod client;
mod config;
mod config_file;
mod error;
mod event_loop;
mod flow;
mod local;
mod local_inbox;
mod proto;
mod shared;
mod store;
mod tls;
mod transport;
mod users;
mod writer;
mod ws;

pub use bridge::{BridgeConfig, BridgeKind, default_broker_id};
pub use broker::{Broker, BrokerStats, ShutdownHandle};
pub use client::{Address, Client, ClientError, ClientOptions, ReceivedMessage};
pub use config::{BrokerBuilder, BrokerConfig};
pub use config_file::{
    AccessSection, BridgeSection, ConfigError, ConfigFile, DurabilityMode, HttpSection, LimitsSection, ListenerSection,
    LogLevel, LogSection, Network, StoreSection, TlsSection,
};
pub use error::Error;
pub use local::{LocalClient, LocalOptions, Received, ReceivedBatch, ReceivedIter, ReceivedRef};
pub use store::{DATABASE_FILE, RedbStore, StoreError};
pub use tinymq_core::Qos;
pub use tinymq_core::durable::SessionFigures;
pub use tinymq_core::http::clients::HttpClientLimits;
pub use tinymq_core::http::conn::HttpConnConfig;
pub use tinymq_core::http::request::HttpLimits;
pub use tls::{ClientTls, ServerTls, TlsError};
pub use transport::{ListenAddr, Transport};
pub use users::{UserError, new_user, verify_password};
pub use writer::Durability;
