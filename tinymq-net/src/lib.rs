//! The I/O shell of the tinymq broker: a hand-rolled mio event loop that
//! drives `tinymq-core` over TCP and Unix sockets, the embedding API and
//! the network client.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod broker;
mod error;
mod event_loop;
mod local;
mod shared;
mod transport;

pub use broker::{Broker, BrokerBuilder, BrokerConfig, BrokerStats, ShutdownHandle};
pub use error::Error;
pub use local::{LocalClient, Received};
pub use transport::{ListenAddr, Transport};
