//! The broker's `$SYS/broker/...` figures.

use std::sync::Arc;

use smallvec::SmallVec;

use super::Broker;
use crate::http::service::SinkKind;
use crate::message::Message;
use crate::metrics::Figures;
use crate::router::{Delivery, NamespaceId};
use crate::topic::{TopicLimits, TopicName};

/// The `from` of the broker's `$SYS/...` messages.
pub const SYS_SENDER: &str = "$SYS";

impl<S: Clone + SinkKind> Broker<S> {
    /// Publishes the broker's main figures as values under
    /// `$SYS/broker/...` in the public namespace, stamped `unix_time`, and
    /// returns each delivery with its receivers for the shell to move.
    /// They are kept in memory, so a new `$SYS/#` subscriber gets the
    /// latest at once, but never written to the store (no store write is
    /// returned) nor counted as messages in.
    pub fn publish_sys(
        &mut self,
        figures: &Figures,
        version: &str,
        unix_time: u64,
    ) -> Vec<(Arc<Delivery>, SmallVec<[S; 4]>)> {
        let connected: u64 = figures.connections.iter().map(|(_, n)| n).sum();
        let values: [(&str, String); 11] = [
            ("$SYS/broker/version", version.to_owned()),
            ("$SYS/broker/uptime", figures.uptime_secs.to_string()),
            ("$SYS/broker/clients/connected", connected.to_string()),
            ("$SYS/broker/subscriptions/count", self.router.subscription_count().to_string()),
            ("$SYS/broker/retained/count", self.router.value_count().to_string()),
            ("$SYS/broker/messages/received", figures.messages_in.to_string()),
            ("$SYS/broker/messages/sent", figures.messages_out.to_string()),
            ("$SYS/broker/bytes/received", figures.bytes_in.to_string()),
            ("$SYS/broker/bytes/sent", figures.bytes_out.to_string()),
            ("$SYS/broker/store/pending", figures.store_pending.to_string()),
            ("$SYS/broker/store/commits", figures.store_commits.to_string()),
        ];
        let from: Arc<str> = SYS_SENDER.into();
        let mut out = Vec::with_capacity(values.len());
        for (topic, value) in values {
            let Ok(name) = TopicName::new(topic, &TopicLimits::UNBOUNDED) else { continue };
            let delivery = Delivery::new(Message {
                topic: topic.into(),
                payload: value.into_bytes().into(),
                from: from.clone(),
                updated_time: unix_time,
                ip: None,
            });
            // In memory only: the store write is dropped.
            let published = self.publish(NamespaceId::PUBLIC, name, &delivery, true);
            out.push((delivery, published.receivers));
        }
        out
    }
}
