//! The crate's error type.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong in tinymq-net, in the caller's terms.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A listener could not be opened.
    #[error("cannot listen on {address}: {source}")]
    Listen {
        /// The address or socket path.
        address: String,
        /// The cause.
        source: io::Error,
    },
    /// A Unix socket path is served by another running process.
    #[error("{0} is in use by a running process")]
    SocketInUse(PathBuf),
    /// A TLS or HTTPS listener was asked for without a certificate.
    #[error("{0} needs a certificate and key (BrokerBuilder::tls)")]
    NoCertificate(String),
    /// A certificate, key or CA could not be read or used.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// An event-loop thread could not start.
    #[error("cannot start the event loop: {0}")]
    EventLoop(io::Error),
    /// A topic name or filter was not valid.
    #[error("invalid topic or filter {topic:?}: {source}")]
    InvalidTopic {
        /// The text given.
        topic: String,
        /// Why it is not valid.
        source: tinymq_core::TopicError,
    },
    /// A payload over the configured limit.
    #[error("payload of {len} bytes is over the limit of {max}")]
    PayloadTooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The store could not be opened or loaded at start.
    #[error(transparent)]
    StoreOpen(#[from] crate::store::StoreError),
    /// A write to the store failed (disk full, read-only, I/O error), or
    /// the store is failing; the write stays queued for a retry.
    #[error("store write failed: {0}")]
    Store(String),
    /// A bridge's settings are not usable (a CA file that cannot be read among them).
    #[error("bridge: {0}")]
    Bridge(String),
    /// The broker has shut down.
    #[error("the broker has shut down")]
    BrokerStopped,
    /// The broker ended this client's session (another took its id).
    #[error("session closed by the broker: {0}")]
    SessionClosed(tinymq_core::ReasonCode),
}
