//! [`MqttClient`]: the client side of MQTT for the bridge, sans-IO, at
//! QoS 0 or QoS 1 (see [`MqttClientConfig::qos`]).
//!
//! It owns what outlives a connection (the server list, the subscriptions,
//! the protocol level that worked, the reconnect backoff) and what belongs
//! to the current one (its state, unparsed bytes, the outbound queue,
//! keep-alive). The shell owns the socket (plain or TLS) and the clock.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::client_options::{MqttClientConfig, MqttLevel, MqttVersion};
use super::decode::{DecodeError, Decoded, Decoder};
use super::encode::encode;
use super::packet::*;
use crate::outbound::Outbound;
use crate::reconnect::{self, Reconnect};

#[path = "client_qos.rs"]
mod qos;
pub use qos::AckTicket;
use qos::{InFlight, Unacked};

/// The user property naming the broker a bridged message came from.
pub const ORIGIN_PROPERTY: &str = "tinymq-origin";

/// A message the server sent on one of our subscriptions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MqttMessage {
    /// Its topic, as on the server.
    pub topic: String,
    /// Its payload.
    pub payload: Vec<u8>,
    /// The retain flag: a stored value (MQTT 5 and the bridge bit carry it
    /// as published; plain 3.1.1 only for values sent on subscribing).
    pub retain: bool,
    /// The [`ORIGIN_PROPERTY`], if it has one.
    pub origin: Option<String>,
    /// A QoS 1 message (on a client at QoS 1): what acknowledges it, to
    /// hand to [`MqttClient::ack`] once it is safe. `None` for QoS 0.
    pub ack: Option<AckTicket>,
}

/// What the client tells its owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MqttEvent {
    /// The server took CONNECT and the subscriptions.
    Connected {
        /// The address dialed.
        server: String,
        /// The level in use.
        level: MqttLevel,
    },
    /// A message on one of our subscriptions.
    Message(MqttMessage),
    /// The server refused a subscription (SUBACK code 0x80 or above).
    SubscriptionRefused {
        /// The filter.
        filter: String,
        /// The code.
        code: u8,
    },
    /// The server acknowledged a QoS 1 publish the client keeps no copy
    /// of (sent with [`MqttClient::publish_with_id`]), or one it did not
    /// send on this connection (a late or repeated PUBACK, to ignore).
    PubAck {
        /// Its packet id.
        packet_id: u16,
    },
    /// Events were dropped: the owner did not take them.
    SlowConsumer {
        /// How many since the last such event.
        dropped: u64,
    },
    /// The connection that reached [`MqttEvent::Connected`] is gone.
    Disconnected {
        /// The address it was to.
        server: String,
    },
}

/// Why the connection must be closed: the shell drops the socket and calls
/// [`MqttClient::handle_disconnected`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionError {
    /// The server's bytes do not decode.
    #[error("invalid data from the server: {0}")]
    Decode(#[from] DecodeError),
    /// A packet a server does not send, or not at this point.
    #[error("the server sent an unexpected {0}")]
    Unexpected(&'static str),
    /// CONNACK refused the connection.
    #[error("the server refused the connection: code {code:#04x}{}", level_note(*.fell_back))]
    Refused {
        /// The CONNACK code (3.1.1 return code or MQTT 5 reason code).
        code: u8,
        /// The next attempt uses a lower protocol level.
        fell_back: bool,
    },
    /// The server sent DISCONNECT (MQTT 5).
    #[error("the server disconnected: reason {0:#04x}")]
    Disconnected(u8),
    /// Dialing, CONNACK or SUBACK took too long.
    #[error("no handshake within {0:?}")]
    HandshakeTimeout(Duration),
    /// No PINGRESP in a keep-alive interval.
    #[error("no PINGRESP within {0:?}")]
    Stale(Duration),
}

fn level_note(fell_back: bool) -> &'static str {
    if fell_back { " (retrying at a lower protocol level)" } else { "" }
}

/// Why a publish or subscribe was refused; nothing was queued.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// No connection has sent SUBSCRIBE yet.
    #[error("not connected to an MQTT server")]
    NotConnected,
    /// The topic or filter is empty, or longer than 65535 bytes.
    #[error("topic of {0} bytes cannot be sent")]
    Topic(usize),
    /// The packet is over the server's Maximum Packet Size or the codec's
    /// limit.
    #[error("packet of {size} bytes is over the server's maximum of {max}")]
    PacketTooLarge {
        /// The packet's size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The outbound queue is full.
    #[error("outbound queue full ({limit} bytes)")]
    OutboundFull {
        /// The limit.
        limit: usize,
    },
    /// QoS 1: the in-flight window is full; a PUBACK makes room.
    #[error("{limit} QoS 1 publishes already wait for PUBACK")]
    WindowFull {
        /// The window's size on this connection.
        limit: usize,
    },
}

/// Counters, as plain data.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MqttStats {
    /// Messages received and queued as events.
    pub messages_in: u64,
    /// Messages queued for the server.
    pub messages_out: u64,
    /// Events dropped because the pending queue was full.
    pub events_dropped: u64,
    /// Messages dropped for an empty topic (an alias we never allowed).
    pub messages_invalid: u64,
    /// Connections that reached [`MqttEvent::Connected`].
    pub connects: u64,
    /// QoS 1 publishes the server acknowledged.
    pub acked_out: u64,
    /// QoS 1 publishes sent again, with DUP, on a later connection.
    pub resent: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Idle,
    Dialing {
        since: Instant,
    },
    AwaitingConnAck {
        since: Instant,
    },
    /// SUBSCRIBE sent with this packet id.
    AwaitingSubAck {
        since: Instant,
        packet_id: u16,
    },
    /// `ping_sent`: a PINGREQ is unanswered.
    Connected {
        next_ping: Instant,
        ping_sent: bool,
    },
    Failed,
}

/// The MQTT client state machine of a bridge.
///
/// # Calling order
///
/// 1. [`MqttClient::new`] once; it outlives connections.
/// 2. When [`MqttClient::next_server`] names a server, dial it. When the
///    socket is open (after the TLS handshake, if any) call
///    [`MqttClient::handle_connected`], which queues CONNECT; when dialing
///    fails call [`MqttClient::handle_disconnected`].
/// 3. When bytes arrive call [`MqttClient::handle_input`]. CONNACK makes
///    the client send one SUBSCRIBE with every filter it holds; SUBACK (or
///    CONNACK, when there is nothing to subscribe) is
///    [`MqttEvent::Connected`].
/// 4. Write [`MqttClient::outbound_mut`]'s bytes after every call.
/// 5. Take [`MqttEvent`]s from [`MqttClient::poll_event`] until `None`.
/// 6. Call [`MqttClient::handle_timeout`] at [`MqttClient::poll_timeout`]
///    (PINGREQ, the keep-alive check, the handshake deadline), and when
///    idle [`MqttClient::next_server`]: the same deadline says when.
/// 7. When a `handle_*` call fails, or the socket ends, drop it and call
///    [`MqttClient::handle_disconnected`], then go back to 2.
///
/// # Protocol level and loops
///
/// The client tries MQTT 5 first: it subscribes with No Local (the server
/// does not send our own publishes back) and Retain As Published (a
/// retained publish arrives marked retained), and every publish carries a
/// user property [`ORIGIN_PROPERTY`] naming the broker it came from, so
/// that a message that went round through other bridges is recognised.
/// A server that refuses MQTT 5 (CONNACK "unsupported protocol version")
/// is tried next with MQTT 3.1.1 at protocol level `0x84`, the bridge bit
/// that Mosquitto reads as "this is a bridge": it then treats the
/// subscriptions as No Local and Retain As Published. A server that
/// refuses that too gets plain level 4, where a bridge in both directions
/// sees its own messages come back: configure such a bridge with
/// different `in` and `out` filters.
///
/// ```
/// use std::time::Instant;
/// use tinymq_core::mqtt::{MqttClient, MqttClientConfig, MqttEvent};
///
/// let now = Instant::now();
/// let config = MqttClientConfig::new(vec!["127.0.0.1:1883".into()], "bridge-a");
/// let mut client = MqttClient::new(config, now);
/// client.subscribe("site/#").unwrap();
/// assert_eq!(client.next_server(now), Some("127.0.0.1:1883"));
/// client.handle_connected(now);
/// let connect = client.outbound().len();
/// assert!(connect > 0);
/// client.outbound_mut().consume(connect);
/// // CONNACK (MQTT 5, no properties), then SUBACK granting QoS 0.
/// client.handle_input(now, &[0x20, 0x03, 0, 0, 0]).unwrap();
/// client.handle_input(now, &[0x90, 0x04, 0, 1, 0, 0]).unwrap();
/// assert!(matches!(client.poll_event(), Some(MqttEvent::Connected { .. })));
/// client.publish("site/a", b"hi", true).unwrap();
/// ```
#[derive(Debug)]
pub struct MqttClient {
    config: MqttClientConfig,
    reconnect: Reconnect,
    state: State,
    level: MqttLevel,
    was_connected: bool,
    /// The server refused our level: try it again at once, one level down.
    fall_back: bool,
    keep_alive: Duration,
    /// The server's Maximum Packet Size (MQTT 5), else the codec's limit.
    max_send: usize,
    /// The server stores retained messages (MQTT 5's Retain Available).
    retain_available: bool,
    decoder: Decoder,
    filters: Vec<String>,
    next_packet_id: u16,
    /// QoS 1 publishes not yet acknowledged, across connections.
    in_flight: InFlight,
    /// Connections opened (CONNECT queued), counted from 1: the
    /// [`AckTicket`]s of an older one acknowledge nothing.
    connection: u64,
    /// The publish properties: the origin (MQTT 5).
    properties: PropertiesBuf,
    input: Vec<u8>,
    outbound: Outbound,
    events: VecDeque<MqttEvent>,
    dropped: u64,
    stats: MqttStats,
}

fn normalize(url: &str) -> String {
    let url = url.trim();
    let url = url.strip_prefix("mqtt://").or_else(|| url.strip_prefix("mqtts://")).unwrap_or(url);
    url.strip_suffix('/').unwrap_or(url).to_owned()
}

/// Filters and topics go on the wire as two-byte-length strings.
fn check_topic(topic: &str) -> Result<(), SendError> {
    if topic.is_empty() || topic.len() > usize::from(u16::MAX) {
        return Err(SendError::Topic(topic.len()));
    }
    Ok(())
}

impl MqttClient {
    /// A client with `config`, created at `now`; the first server is due
    /// at once.
    pub fn new(config: MqttClientConfig, now: Instant) -> Self {
        let servers = config.servers.iter().map(|s| normalize(s));
        let reconnect = Reconnect::new(servers, config.reconnect_min, config.reconnect_max, now);
        let level = if config.version == MqttVersion::V311 { MqttLevel::V311Bridge } else { MqttLevel::V5 };
        let mut properties = PropertiesBuf::new();
        if !config.origin.is_empty() && config.origin.len() <= usize::from(u16::MAX) {
            properties.push(Property::UserProperty(ORIGIN_PROPERTY, &config.origin));
        }
        MqttClient {
            reconnect,
            state: State::Idle,
            level,
            was_connected: false,
            fall_back: false,
            keep_alive: config.keep_alive,
            max_send: super::decode::MAX_REMAINING_LENGTH,
            retain_available: true,
            decoder: Decoder::new(config.max_packet_size, QoS::AtLeastOnce),
            filters: Vec::new(),
            next_packet_id: 0,
            in_flight: InFlight::new(config.max_inflight),
            connection: 0,
            properties,
            input: Vec::new(),
            outbound: Outbound::streaming(config.max_outbound),
            events: VecDeque::new(),
            dropped: 0,
            stats: MqttStats::default(),
            config,
        }
    }

    /// The server of the current or last connection (before the first,
    /// the last one configured).
    pub fn server(&self) -> Option<&str> {
        self.reconnect.server().or_else(|| self.reconnect.servers().last().map(String::as_str))
    }

    /// The level the current or next connection uses.
    pub fn level(&self) -> MqttLevel {
        self.level
    }

    /// Whether the server took CONNECT and the subscriptions, and the
    /// connection was not lost.
    pub fn is_connected(&self) -> bool {
        matches!(self.state, State::Connected { .. })
    }

    /// The counters.
    pub fn stats(&self) -> &MqttStats {
        &self.stats
    }

    /// The filters subscribed on every connection.
    pub fn filters(&self) -> &[String] {
        &self.filters
    }

    /// Bytes of a partial packet held until more arrive; never more than
    /// the maximum packet size (its declared length is checked first).
    pub fn unparsed_len(&self) -> usize {
        self.input.len()
    }

    /// Bytes waiting to be written.
    pub fn outbound(&self) -> &Outbound {
        &self.outbound
    }

    /// Bytes waiting to be written, to mark what was written.
    pub fn outbound_mut(&mut self) -> &mut Outbound {
        &mut self.outbound
    }

    /// The next server to dial, when an attempt is due at `now` and none
    /// is under way; each failed attempt doubles the wait (capped).
    #[must_use]
    pub fn next_server(&mut self, now: Instant) -> Option<&str> {
        if self.state != State::Idle {
            return None;
        }
        let server = self.reconnect.next_server(now)?;
        self.state = State::Dialing { since: now };
        Some(server)
    }

    /// The socket to the server [`MqttClient::next_server`] named is open
    /// (TLS, if any, started): CONNECT is queued.
    ///
    /// # Panics
    ///
    /// If the client id, user name or password is longer than the 65535
    /// bytes an MQTT string holds: check them in the configuration.
    pub fn handle_connected(&mut self, now: Instant) {
        if !matches!(self.state, State::Dialing { .. }) {
            return;
        }
        let keep_alive = u16::try_from(self.config.keep_alive.as_secs()).unwrap_or(u16::MAX);
        // At QoS 1 the session is kept on the server while we are away:
        // our subscriptions stay, and what is published on them waits.
        let persistent = self.config.qos == QoS::AtLeastOnce;
        let mut properties = PropertiesBuf::new();
        if self.level == MqttLevel::V5 {
            // Topic aliases stay off (the default maximum of 0), and what
            // we take is bounded.
            properties.push(Property::MaximumPacketSize(
                u32::try_from(self.config.max_packet_size).unwrap_or(u32::MAX).max(1),
            ));
            if persistent {
                properties.push(Property::SessionExpiryInterval(self.config.session_expiry));
            }
        }
        self.connection += 1;
        let connect = Connect {
            version: self.level.version(),
            client_id: &self.config.client_id,
            clean_start: !persistent,
            keep_alive,
            will: None,
            username: self.config.username.as_deref(),
            password: self.config.password.as_deref().map(str::as_bytes),
            properties: properties.as_properties(),
        };
        let mut bytes = Vec::new();
        encode(&Packet::Connect(connect), self.level.version(), &mut bytes);
        if self.level == MqttLevel::V311Bridge {
            set_bridge_bit(&mut bytes);
        }
        self.outbound.push_final(&bytes);
        self.state = State::AwaitingConnAck { since: now };
    }

    /// The connection is gone (or dialing failed): forget its bytes and
    /// schedule the next attempt.
    pub fn handle_disconnected(&mut self, now: Instant) {
        if self.state == State::Idle {
            return;
        }
        if std::mem::take(&mut self.was_connected) {
            let server = self.server().unwrap_or_default().to_owned();
            self.events.push_back(MqttEvent::Disconnected { server });
        }
        self.state = State::Idle;
        self.input = Vec::new();
        self.outbound = Outbound::streaming(self.config.max_outbound);
        self.keep_alive = self.config.keep_alive;
        self.max_send = super::decode::MAX_REMAINING_LENGTH;
        self.retain_available = true;
        if std::mem::take(&mut self.fall_back) {
            self.reconnect.retry_same(now);
        } else {
            self.reconnect.failed(now);
        }
    }

    /// Takes bytes read from the socket. On an error the connection is
    /// unusable: drop it and call [`MqttClient::handle_disconnected`].
    pub fn handle_input(&mut self, now: Instant, bytes: &[u8]) -> Result<(), ConnectionError> {
        if !matches!(self.state, State::AwaitingConnAck { .. } | State::AwaitingSubAck { .. } | State::Connected { .. })
        {
            return Ok(());
        }
        let mut held = std::mem::take(&mut self.input);
        if let Err(error) = reconnect::feed(&mut held, bytes, |bytes| self.handle_packets(now, bytes)) {
            self.state = State::Failed;
            return Err(error);
        }
        self.input = held;
        Ok(())
    }

    fn handle_packets(&mut self, now: Instant, bytes: &[u8]) -> Result<usize, ConnectionError> {
        let mut at = 0;
        loop {
            let rest = &bytes[at..];
            // A 3.1.1 server answers an MQTT 5 CONNECT with a 3.1.1
            // CONNACK (two bytes, no properties), which MQTT 5 cannot
            // decode.
            let version = match (self.state, rest) {
                (State::AwaitingConnAck { .. }, [0x20, 0x02, ..]) => ProtocolVersion::V311,
                _ => self.level.version(),
            };
            match self.decoder.decode(version, rest)? {
                Decoded::Partial { .. } => return Ok(at),
                Decoded::Complete { packet, consumed } => {
                    self.handle_packet(now, packet)?;
                    at += consumed;
                }
            }
            if self.state == State::Failed {
                return Ok(at);
            }
        }
    }

    fn handle_packet(&mut self, now: Instant, packet: Packet<'_>) -> Result<(), ConnectionError> {
        match (self.state, packet) {
            (State::AwaitingConnAck { since }, Packet::ConnAck(ack)) => self.handle_connack(now, since, &ack),
            (State::AwaitingConnAck { .. }, other) => Err(ConnectionError::Unexpected(packet_name(&other))),
            (State::AwaitingSubAck { packet_id, .. }, Packet::SubAck(ack)) if ack.packet_id == packet_id => {
                for (filter, &code) in self.filters.iter().zip(ack.codes) {
                    if code >= 0x80 {
                        let refused = MqttEvent::SubscriptionRefused { filter: filter.clone(), code };
                        self.events.push_back(refused);
                    }
                }
                self.reach_connected(now);
                Ok(())
            }
            (_, Packet::Publish(publish)) => {
                self.handle_publish(&publish);
                Ok(())
            }
            (_, Packet::PubAck(ack)) => {
                // An id not in flight (acknowledged twice, across a
                // reconnect) is nothing to do.
                if self.in_flight.ack(ack.packet_id) {
                    self.stats.acked_out += 1;
                } else if self.events.len() < self.config.max_pending_events {
                    // Perhaps one of the owner's (`publish_with_id`): it
                    // knows its ids. Past the bound it is not told, and
                    // sends the message again on the next connection.
                    self.events.push_back(MqttEvent::PubAck { packet_id: ack.packet_id });
                }
                Ok(())
            }
            (State::Connected { next_ping, .. }, Packet::PingResp) => {
                self.state = State::Connected { next_ping, ping_sent: false };
                Ok(())
            }
            // Answers to SUBSCRIBE / UNSUBSCRIBE after the handshake, and
            // a PINGRESP that crossed a reconnect: nothing to do.
            (_, Packet::SubAck(_) | Packet::UnsubAck(_) | Packet::PingResp) => Ok(()),
            (_, Packet::Disconnect(disconnect)) => Err(ConnectionError::Disconnected(disconnect.reason)),
            (_, other) => Err(ConnectionError::Unexpected(packet_name(&other))),
        }
    }

    fn handle_connack(&mut self, now: Instant, since: Instant, ack: &ConnAck<'_>) -> Result<(), ConnectionError> {
        if ack.code != 0 {
            // 1 is 3.1.1's "unacceptable protocol version", 0x84 MQTT 5's.
            let unsupported = ack.code == 1 || ack.code == ReasonCode::UnsupportedProtocolVersion as u8;
            let lower = match self.level {
                MqttLevel::V5 if self.config.version == MqttVersion::Auto => Some(MqttLevel::V311Bridge),
                MqttLevel::V311Bridge => Some(MqttLevel::V311),
                _ => None,
            };
            let fell_back = unsupported && lower.is_some();
            if let (true, Some(lower)) = (unsupported, lower) {
                self.level = lower;
                self.fall_back = true;
            }
            return Err(ConnectionError::Refused { code: ack.code, fell_back });
        }
        if let Some(seconds) = ack.properties.iter().find_map(|p| match p {
            Property::ServerKeepAlive(seconds) if seconds > 0 => Some(seconds),
            _ => None,
        }) {
            self.keep_alive = Duration::from_secs(u64::from(seconds));
        }
        if let Some(max) = ack.properties.maximum_packet_size() {
            self.max_send = usize::try_from(max).unwrap_or(usize::MAX);
        }
        if ack.properties.iter().any(|p| p == Property::RetainAvailable(0)) {
            self.retain_available = false;
        }
        self.in_flight.set_receive_maximum(ack.properties.receive_maximum());
        self.resend_in_flight();
        if self.filters.is_empty() {
            self.reach_connected(now);
            return Ok(());
        }
        let packet_id = self.packet_id();
        let no_local = self.level == MqttLevel::V5;
        let options =
            SubscriptionOptions { qos: self.config.qos, no_local, retain_as_published: no_local, retain_handling: 0 };
        let subscribe = Subscribe {
            packet_id,
            properties: Properties::EMPTY,
            filters: self.filters.iter().map(|filter| SubscribeFilter { filter, options }).collect(),
        };
        let mut bytes = Vec::new();
        encode(&Packet::Subscribe(subscribe), self.level.version(), &mut bytes);
        self.outbound.push_final(&bytes);
        self.state = State::AwaitingSubAck { since, packet_id };
        Ok(())
    }

    fn reach_connected(&mut self, now: Instant) {
        self.state = State::Connected { next_ping: now + self.keep_alive, ping_sent: false };
        self.reconnect.connected();
        self.was_connected = true;
        self.stats.connects += 1;
        let server = self.server().unwrap_or_default().to_owned();
        self.events.push_back(MqttEvent::Connected { server, level: self.level });
    }

    fn handle_publish(&mut self, publish: &Publish<'_>) {
        let mut ticket = None;
        if let Some(packet_id) = publish.packet_id {
            if self.config.qos == QoS::AtLeastOnce {
                // The owner acknowledges it once it is safe.
                ticket = Some(AckTicket { connection: self.connection, packet_id });
            } else {
                // We subscribe at QoS 0; a server that sends QoS 1 anyway
                // is acknowledged, so it does not send it again.
                self.queue_puback(packet_id);
            }
        }
        if publish.topic.is_empty() {
            if let Some(ticket) = ticket {
                self.ack(ticket);
            }
            self.stats.messages_invalid += 1;
            return;
        }
        let origin = publish
            .properties
            .user_properties()
            .find_map(|(key, value)| (key == ORIGIN_PROPERTY).then(|| value.to_owned()));
        let message = MqttMessage {
            topic: publish.topic.to_owned(),
            payload: publish.payload.to_vec(),
            retain: publish.retain,
            origin,
            ack: ticket,
        };
        // A QoS 1 message dropped here is not acknowledged: the server
        // sends it again on the next connection.
        if self.events.len() >= self.config.max_pending_events {
            self.dropped += 1;
            self.stats.events_dropped += 1;
            return;
        }
        self.events.push_back(MqttEvent::Message(message));
        self.stats.messages_in += 1;
    }

    /// Call at [`MqttClient::poll_timeout`]: sends PINGREQ when due, and
    /// fails when the handshake or a PINGREQ went unanswered too long.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), ConnectionError> {
        match self.state {
            State::Dialing { since } | State::AwaitingConnAck { since } | State::AwaitingSubAck { since, .. }
                if now >= since + self.config.handshake_timeout =>
            {
                self.state = State::Failed;
                return Err(ConnectionError::HandshakeTimeout(self.config.handshake_timeout));
            }
            State::Connected { next_ping, ping_sent } if now >= next_ping => {
                if ping_sent {
                    self.state = State::Failed;
                    return Err(ConnectionError::Stale(self.keep_alive));
                }
                let mut bytes = Vec::new();
                encode(&Packet::PingReq, self.level.version(), &mut bytes);
                self.outbound.push_final(&bytes);
                self.state = State::Connected { next_ping: now + self.keep_alive, ping_sent: true };
            }
            _ => {}
        }
        Ok(())
    }

    /// When [`MqttClient::handle_timeout`] (or, when idle,
    /// [`MqttClient::next_server`]) must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Idle => self.reconnect.retry_at(),
            State::Dialing { since } | State::AwaitingConnAck { since } | State::AwaitingSubAck { since, .. } => {
                Some(since + self.config.handshake_timeout)
            }
            State::Connected { next_ping, .. } => Some(next_ping),
            State::Failed => None,
        }
    }

    /// The next event, if any; a [`MqttEvent::SlowConsumer`] first when
    /// events were dropped.
    pub fn poll_event(&mut self) -> Option<MqttEvent> {
        if self.dropped > 0 {
            return Some(MqttEvent::SlowConsumer { dropped: std::mem::take(&mut self.dropped) });
        }
        self.events.pop_front()
    }

    /// Subscribes to `filter` on every later connection (call it before
    /// the first: the bridge's filters are fixed).
    pub fn subscribe(&mut self, filter: &str) -> Result<(), SendError> {
        check_topic(filter)?;
        if !self.filters.iter().any(|f| f == filter) {
            self.filters.push(filter.to_owned());
        }
        Ok(())
    }

    /// Queues a PUBLISH at the configured QoS. Refused, with nothing
    /// queued, when not connected, when it cannot be sent, when the
    /// outbound queue is full, or (QoS 1) when the in-flight window is.
    /// A QoS 1 publish is kept until the server acknowledges it, and sent
    /// again on every new connection until then. An empty retained
    /// payload deletes the topic's value on the server. A server without
    /// retained messages (MQTT 5's Retain Available 0) gets every publish
    /// live: a retained one would cost the connection.
    pub fn publish(&mut self, topic: &str, payload: &[u8], retain: bool) -> Result<(), SendError> {
        self.queue_publish(topic, payload, retain, self.config.qos, None, false)
    }

    /// Queues a PUBLISH at QoS 1 with `packet_id`, DUP set if `dup`, for
    /// an owner that keeps its own window of unacknowledged publishes (a
    /// bridge whose out-queue is a stored session): the client keeps no
    /// copy, does not send it again, and reports its PUBACK as
    /// [`MqttEvent::PubAck`]. The owner keeps within [`MqttClient::send_window`],
    /// sends what was in flight again on each new connection, and uses
    /// only this for QoS 1 (its ids are the owner's). Refused, with
    /// nothing queued, as [`MqttClient::publish`] is, but for the window.
    pub fn publish_with_id(
        &mut self,
        topic: &str,
        payload: &[u8],
        retain: bool,
        packet_id: u16,
        dup: bool,
    ) -> Result<(), SendError> {
        let packet_id = packet_id.max(1);
        self.queue_publish(topic, payload, retain, QoS::AtLeastOnce, Some(packet_id), dup)
    }

    /// Publishes sent and not yet acknowledged this connection may hold:
    /// the configured window, or the server's Receive Maximum if lower.
    pub fn send_window(&self) -> usize {
        self.in_flight.limit()
    }

    /// Encodes and queues a PUBLISH; `packet_id` is the caller's (`None`:
    /// taken here at QoS 1, and the copy kept in the window).
    fn queue_publish(
        &mut self,
        topic: &str,
        payload: &[u8],
        retain: bool,
        qos: QoS,
        packet_id: Option<u16>,
        dup: bool,
    ) -> Result<(), SendError> {
        let retain = retain && self.retain_available;
        if !self.is_connected() {
            return Err(SendError::NotConnected);
        }
        check_topic(topic)?;
        let v5 = self.level == MqttLevel::V5;
        let properties_len = if v5 { self.properties.as_properties().as_bytes().len() + 4 } else { 0 };
        // Fixed header (at most 5), topic, packet id, properties, payload.
        let size = 5 + 2 + topic.len() + 2 + properties_len + payload.len();
        let max = self.max_send.min(self.config.max_outbound);
        if size > max {
            return Err(SendError::PacketTooLarge { size, max });
        }
        let limit = self.outbound.limit();
        if self.outbound.len() + size > limit {
            return Err(SendError::OutboundFull { limit });
        }
        let own = packet_id.is_none() && qos == QoS::AtLeastOnce;
        if own && self.in_flight.is_full() {
            return Err(SendError::WindowFull { limit: self.in_flight.len() });
        }
        let packet_id = packet_id.or_else(|| own.then(|| self.packet_id()));
        let properties = if v5 { self.properties.as_properties() } else { Properties::EMPTY };
        let publish = Publish { dup, qos, retain, topic, packet_id, properties, payload };
        let version = self.level.version();
        self.outbound
            .push_with(|out| encode(&Packet::Publish(publish), version, out))
            .map_err(|_| SendError::OutboundFull { limit })?;
        if let Some(packet_id) = packet_id.filter(|_| own) {
            let unacked = Unacked { packet_id, topic: topic.to_owned(), payload: payload.to_vec(), retain };
            self.in_flight.push(unacked);
        }
        self.stats.messages_out += 1;
        Ok(())
    }

    /// The next packet id that no publish in flight holds.
    fn packet_id(&mut self) -> u16 {
        loop {
            self.next_packet_id = self.next_packet_id.checked_add(1).unwrap_or(1);
            if !self.in_flight.contains(self.next_packet_id) {
                return self.next_packet_id;
            }
        }
    }
}

/// Sets the high bit of CONNECT's protocol level: after the fixed header
/// (the type byte and a one- to four-byte length) come the protocol name
/// `00 04 MQTT`, then the level.
fn set_bridge_bit(connect: &mut [u8]) {
    let length_bytes = connect[1..].iter().take(4).take_while(|&&b| b & 0x80 != 0).count() + 1;
    if let Some(level) = connect.get_mut(1 + length_bytes + 6) {
        *level |= 0x80;
    }
}

fn packet_name(packet: &Packet<'_>) -> &'static str {
    match packet {
        Packet::Connect(_) => "CONNECT",
        Packet::ConnAck(_) => "CONNACK",
        Packet::Publish(_) => "PUBLISH",
        Packet::PubAck(_) => "PUBACK",
        Packet::PubRec(_) => "PUBREC",
        Packet::PubRel(_) => "PUBREL",
        Packet::PubComp(_) => "PUBCOMP",
        Packet::Subscribe(_) => "SUBSCRIBE",
        Packet::SubAck(_) => "SUBACK",
        Packet::Unsubscribe(_) => "UNSUBSCRIBE",
        Packet::UnsubAck(_) => "UNSUBACK",
        Packet::PingReq => "PINGREQ",
        Packet::PingResp => "PINGRESP",
        Packet::Disconnect(_) => "DISCONNECT",
        Packet::Auth(_) => "AUTH",
    }
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
