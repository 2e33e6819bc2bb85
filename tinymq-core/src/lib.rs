//! The sans-IO core of the tinymq broker.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod codec;
pub mod message;
pub mod topic;

pub use codec::{Decoded, DecodeError, Decoder, Frame, FrameLimits, FrameType, ReasonCode};
pub use message::Message;
pub use topic::{Filter, SubscriptionTrie, TopicError, TopicLimits, TopicName};
