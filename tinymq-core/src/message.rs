//! The message every transport carries.

use std::net::IpAddr;
use std::sync::Arc;

use crate::codec::Frame;

/// One published message or stored value, shared by every subscriber it
/// reaches: a publish allocates one `Message` and hands out `Arc`s.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The topic name it was published to (or the value name of a PUTVAL).
    pub topic: Arc<str>,
    /// The payload bytes.
    pub payload: Arc<[u8]>,
    /// Who sent it: the binary session's client id, the HTTP `from`, or the
    /// in-process client's id. `UNKNOWN` when the sender gave none.
    pub from: Arc<str>,
    /// Unix seconds: given by the sender, else the broker's clock.
    pub updated_time: u64,
    /// The sender's address, when it came over a network transport.
    pub ip: Option<IpAddr>,
}

impl Message {
    /// The `from` used when a sender gives none (Moustique's convention).
    pub const UNKNOWN_SENDER: &'static str = "UNKNOWN";

    /// The Publish frame that delivers this message to a binary subscriber.
    pub fn publish_frame(&self, retain: bool) -> Frame<'_> {
        Frame::publish(&self.topic, &self.payload, &self.from, retain)
    }
}
