//! The sans-IO core of the tinymq broker.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod broker;
pub mod codec;
pub mod message;
pub mod outbound;
pub mod router;
pub mod session;
pub mod topic;

pub use codec::{DecodeError, Decoded, Decoder, Frame, FrameLimits, FrameType, ReasonCode};
pub use message::Message;
pub use outbound::Outbound;
pub use router::{Delivery, NamespaceId, Router, SubscriberId};
pub use session::{Closed, Credentials, Request, Session, SessionConfig, Step};
pub use topic::{Filter, SubscriptionTrie, TopicError, TopicLimits, TopicName};
