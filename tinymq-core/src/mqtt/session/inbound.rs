//! What the client sends: CONNECT, then the packets of a connected
//! session, each handled inside the session or turned into a [`Request`]
//! for the broker (see the parent module's calling order).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Request, ServerSession, State, Step, Subscription, WillMessage, forwarded};
use crate::codec::ReasonCode as Cause;
use crate::mqtt::Decoded;
use crate::mqtt::packet::{Packet, Property, ProtocolVersion, Publish, ReasonCode};
use crate::session::{Closed, Credentials};
use crate::topic::{Filter, TopicLimits, TopicName};

impl ServerSession {
    /// Decodes and handles the first packet of `input`. See [`Step`].
    pub fn handle_input<'a>(&mut self, now: Instant, input: &'a [u8]) -> Result<Step<'a>, Closed> {
        if let State::Closed(reason) = self.state {
            return Err(Closed { reason });
        }
        if !input.is_empty() {
            self.last_received = now;
        }
        let Some(version) = self.version else { return self.handle_connect(input) };
        if self.state == State::Connecting {
            return Err(self.close_with(Cause::ProtocolError, ReasonCode::ProtocolError, "packet sent before CONNACK"));
        }
        let (packet, consumed) = match self.decoder.decode(version, input) {
            Ok(Decoded::Partial { needed }) => return Ok(Step::Incomplete { needed }),
            Ok(Decoded::Complete { packet, consumed }) => (packet, consumed),
            Err(error) => return Err(self.decode_failed(&error)),
        };
        let request = match packet {
            Packet::Publish(publish) => match self.inbound_publish(publish)? {
                Some(request) => request,
                None => return Ok(Step::Handled { consumed }),
            },
            Packet::PubAck(ack) if self.durable => Request::PubAck { packet_id: ack.packet_id },
            Packet::PubAck(ack) => {
                self.outgoing.acknowledged(ack.packet_id);
                self.send_waiting()?;
                return Ok(Step::Handled { consumed });
            }
            Packet::Subscribe(subscribe) => {
                if subscribe.properties.iter().any(|p| matches!(p, Property::SubscriptionIdentifier(_))) {
                    let text = "subscription identifiers are not supported";
                    return Err(self.close_with(
                        Cause::ProtocolError,
                        ReasonCode::SubscriptionIdentifiersNotSupported,
                        text,
                    ));
                }
                let limits = self.config.topic_limits;
                let filters = subscribe
                    .filters
                    .iter()
                    .map(|entry| Subscription { filter: check_filter(entry.filter, &limits), options: entry.options })
                    .collect();
                Request::Subscribe { packet_id: subscribe.packet_id, filters }
            }
            Packet::Unsubscribe(unsubscribe) => {
                let limits = self.config.topic_limits;
                let filters = unsubscribe.filters.iter().map(|filter| check_filter(filter, &limits)).collect();
                Request::Unsubscribe { packet_id: unsubscribe.packet_id, filters }
            }
            Packet::PingReq => {
                self.queue(&Packet::PingResp)?;
                return Ok(Step::Handled { consumed });
            }
            Packet::Disconnect(disconnect) => {
                let expiry = disconnect.properties.session_expiry_interval().unwrap_or(0);
                if self.expiry_asked == 0 && expiry > 0 {
                    let text = "a Session Expiry Interval in DISCONNECT after none in CONNECT";
                    return Err(self.close_with(Cause::ProtocolError, ReasonCode::ProtocolError, text));
                }
                // 0x04 "disconnect with will message" keeps the will.
                self.will_on_disconnect = disconnect.reason == ReasonCode::DisconnectWithWill as u8;
                if !self.will_on_disconnect {
                    self.will = None;
                }
                self.state = State::Closed(None);
                Request::Disconnect
            }
            Packet::PubRec(_) | Packet::PubRel(_) | Packet::PubComp(_) => {
                let text = "QoS 2 is not supported";
                return Err(self.close_with(Cause::ProtocolError, ReasonCode::ProtocolError, text));
            }
            Packet::Auth(_) => {
                let text = "enhanced authentication is not supported";
                return Err(self.close_with(Cause::ProtocolError, ReasonCode::ProtocolError, text));
            }
            Packet::Connect(_) => {
                return Err(self.close_with(Cause::ProtocolError, ReasonCode::ProtocolError, "a second CONNECT"));
            }
            Packet::ConnAck(_) | Packet::SubAck(_) | Packet::UnsubAck(_) | Packet::PingResp => {
                let text = "a packet only a server sends";
                return Err(self.close_with(Cause::ProtocolError, ReasonCode::ProtocolError, text));
            }
        };
        Ok(Step::Request { consumed, request })
    }

    fn handle_connect<'a>(&mut self, input: &'a [u8]) -> Result<Step<'a>, Closed> {
        let (connect, consumed) = match self.decoder.decode_connect(input) {
            Ok(Decoded::Partial { needed }) => return Ok(Step::Incomplete { needed }),
            Ok(Decoded::Complete { packet: Packet::Connect(connect), consumed }) => (connect, consumed),
            Ok(Decoded::Complete { .. }) => unreachable!("decode_connect yields only CONNECT"),
            Err(error) => return Err(self.connect_failed(&error)),
        };
        self.version = Some(connect.version);
        if let Some(reason) = self.door_refusal {
            return Err(self.refuse_connect(reason, "this peer may not connect"));
        }
        if connect.client_id.is_empty() && !connect.clean_start && connect.version == ProtocolVersion::V311 {
            // 3.1.1 section 3.1.3.1: a client without an id must start clean.
            let text = "an empty client id needs Clean Session";
            return Err(self.refuse_connect(ReasonCode::ClientIdentifierNotValid, text));
        }
        let credentials = match (connect.username, connect.password) {
            (None, None) => None,
            (Some(username), password) => match std::str::from_utf8(password.unwrap_or_default()) {
                Ok(password) => Some(Credentials { username, password }),
                Err(_) => return Err(self.refuse_connect(ReasonCode::BadUserNameOrPassword, "password is not UTF-8")),
            },
            (None, Some(_)) => {
                return Err(self.refuse_connect(ReasonCode::BadUserNameOrPassword, "a password without a user name"));
            }
        };
        if let Some(will) = connect.will {
            let topic = match TopicName::new(will.topic, &self.config.topic_limits) {
                Ok(topic) if !topic.is_system() => topic,
                _ => return Err(self.refuse_connect(ReasonCode::TopicNameInvalid, "the will topic is not allowed")),
            };
            self.will = Some(Box::new(WillMessage {
                topic: topic.as_str().into(),
                payload: will.payload.into(),
                qos: will.qos,
                retain: will.retain,
                properties: forwarded(will.properties),
            }));
        }
        let properties = connect.properties;
        self.clean_start = connect.clean_start;
        self.expiry_asked = properties.session_expiry_interval().unwrap_or(0);
        self.outgoing.limit_window(properties.receive_maximum().unwrap_or(u16::MAX));
        self.client_max_packet = properties.maximum_packet_size().map_or(usize::MAX, |max| max as usize);
        self.idle_timeout = match connect.keep_alive {
            0 => None,
            secs => Some(Duration::from_millis(u64::from(secs) * 1500)),
        };
        self.requested = Some(connect.client_id.into());
        self.state = State::Connecting;
        Ok(Step::Request { consumed, request: Request::Connect { client_id: connect.client_id, credentials } })
    }

    fn inbound_publish<'a>(&mut self, publish: Publish<'a>) -> Result<Option<Request<'a>>, Closed> {
        let topic = self.resolve_topic(&publish)?;
        if publish.packet_id.is_some() {
            // Every QoS 1 PUBLISH gets its PUBACK, now or after a commit.
            self.unacked = self.unacked.saturating_add(1);
        }
        if topic.starts_with('$') {
            // `$` topics are the broker's own: dropped, as mosquitto does,
            // and a QoS 1 one is acknowledged (MQTT 5: not authorized).
            if let Some(packet_id) = publish.packet_id {
                self.pub_ack(packet_id, ReasonCode::NotAuthorized);
            }
            return Ok(None);
        }
        Ok(Some(Request::Publish {
            topic,
            payload: publish.payload,
            retain: publish.retain,
            qos: publish.qos,
            packet_id: publish.packet_id,
            properties: publish.properties,
        }))
    }

    /// The topic of a PUBLISH: its own (setting an alias if it carries
    /// one), or the one its alias stands for; validated as a tinymq topic.
    fn resolve_topic(&mut self, publish: &Publish<'_>) -> Result<Arc<str>, Closed> {
        let alias = publish.properties.topic_alias();
        if let Some(alias) = alias
            && (alias == 0 || alias > self.config.topic_alias_maximum)
        {
            let text = "topic alias over the maximum";
            return Err(self.close_with(Cause::ProtocolError, ReasonCode::TopicAliasInvalid, text));
        }
        let slot = alias.map(|alias| usize::from(alias) - 1);
        if publish.topic.is_empty() {
            let known = slot.and_then(|slot| self.aliases.get(slot).cloned().flatten());
            return known.ok_or_else(|| {
                self.close_with(Cause::ProtocolError, ReasonCode::ProtocolError, "an unknown topic alias")
            });
        }
        let topic = match TopicName::new(publish.topic, &self.config.topic_limits) {
            Ok(topic) => topic,
            Err(error) => {
                return Err(self.close_with(Cause::InvalidTopic, ReasonCode::TopicNameInvalid, &error.to_string()));
            }
        };
        let shared = match &self.last_topic {
            Some(last) if **last == *topic.as_str() => last.clone(),
            _ => {
                let shared: Arc<str> = topic.as_str().into();
                self.last_topic = Some(shared.clone());
                shared
            }
        };
        if let Some(slot) = slot {
            if self.aliases.len() <= slot {
                self.aliases.resize(slot + 1, None);
            }
            self.aliases[slot] = Some(shared.clone());
        }
        Ok(shared)
    }
}

/// A SUBSCRIBE or UNSUBSCRIBE filter as a tinymq [`Filter`], or the code
/// refusing it: shared subscriptions (`$share/...`) are not offered.
fn check_filter(filter: &str, limits: &TopicLimits) -> Result<Filter, ReasonCode> {
    if filter.starts_with("$share/") {
        return Err(ReasonCode::SharedSubscriptionsNotSupported);
    }
    Filter::new(filter, limits).map_err(|_| ReasonCode::TopicFilterInvalid)
}
