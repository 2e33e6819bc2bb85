//! What differs between a NATS and an MQTT bridge, behind one face: the
//! protocol client ([`Link`]), what it reports ([`LinkEvent`]), and the
//! socket it talks through, plain or TLS ([`LinkSocket`]).

use std::io::{self, IoSlice, Read, Write};
use std::sync::Arc;
use std::time::Instant;

use mio::net::TcpStream;
use tinymq_core::Outbound;
use tinymq_core::mqtt::{self, AckTicket, MqttClient, MqttClientConfig, MqttEvent, QoS};
use tinymq_core::nats::{self, Credentials as NatsCredentials, Headers, NatsClient, NatsConfig, NatsEvent, Payload};

use crate::bridge::{BridgeConfig, BridgeKind, Checked, Mapping};
use crate::tls::{ClientTls, TlsStream};

/// A message from the far side, its name still the far side's.
pub(super) struct Incoming {
    /// The subject or topic (NATS: shared with the message before it on
    /// the same subject).
    pub(super) name: Arc<str>,
    /// A range of the chunk it was read in (NATS), or its own (MQTT):
    /// copied only where it becomes a stored or shared message here.
    pub(super) payload: Payload,
    /// Retained (MQTT; a NATS message says so in its headers).
    pub(super) retained: bool,
    /// The broker it came from, if it says (MQTT).
    pub(super) origin: Option<String>,
    /// Its headers (NATS), shared with the messages before it that had
    /// the same: the origin is read from them, not copied.
    pub(super) headers: Option<Arc<Headers>>,
    /// QoS 1 (MQTT): what acknowledges it, once it is safe here.
    pub(super) ack: Option<AckTicket>,
}

impl Incoming {
    /// The broker it came from, if it says.
    pub(super) fn origin(&self) -> Option<&str> {
        match &self.headers {
            Some(headers) => headers.origin(),
            None => self.origin.as_deref(),
        }
    }

    /// Whether it was published retained.
    pub(super) fn retained(&self) -> bool {
        match &self.headers {
            Some(headers) => headers.is_retained(),
            None => self.retained,
        }
    }
}

/// What a [`Link`] reports, in the protocol's place.
pub(super) enum LinkEvent {
    Connected(String),
    Message(Incoming),
    /// A `-ERR`, or a refused subscription: logged and shown, the
    /// connection stays.
    Error(String),
    /// Messages from the far side dropped because the broker is behind.
    Dropped(u64),
    /// The far side acknowledged a publish sent with
    /// [`Link::publish_with_id`] (MQTT QoS 1): its packet id.
    PubAck(u16),
    Disconnected(String),
}

/// Why a publish was not queued.
pub(super) enum Refused {
    /// Not connected: hold it.
    NotConnected,
    /// The output buffer is full: hold it until the socket takes some.
    Full,
    /// QoS 1: the in-flight window is full: hold it until a PUBACK.
    Window,
    /// It can never be sent (too large, a bad name): drop it.
    Unsendable(String),
}

/// The protocol client of one bridge.
pub(super) enum Link {
    Nats(NatsClient),
    Mqtt(MqttClient),
}

impl Link {
    pub(super) fn new(config: &BridgeConfig, checked: &Checked, now: Instant) -> io::Result<Link> {
        let subjects = remote_filters(checked);
        let credentials = &checked.credentials;
        match config.kind {
            BridgeKind::Nats => {
                let mut nats = NatsConfig { servers: checked.servers.clone(), ..NatsConfig::default() };
                nats.connect.name = format!("tinymq {}", config.broker_id);
                // `validate` lets only one kind through.
                nats.connect.credentials = if let Some(user) = &credentials.username {
                    NatsCredentials::UserPassword {
                        user: user.clone(),
                        password: credentials.password.clone().unwrap_or_default(),
                    }
                } else if let Some(token) = &credentials.token {
                    NatsCredentials::Token(token.clone())
                } else if let Some(seed) = &credentials.nkey {
                    NatsCredentials::Nkey(seed.clone())
                } else if let Some(creds) = &credentials.creds {
                    NatsCredentials::Jwt(creds.clone())
                } else {
                    NatsCredentials::None
                };
                nats.tls = checked.tls.is_some();
                let mut client = NatsClient::new(nats, now);
                for subject in &subjects {
                    client
                        .subscribe(subject)
                        .map_err(|e| io::Error::other(format!("bridge subject {subject:?}: {e}")))?;
                }
                Ok(Link::Nats(client))
            }
            BridgeKind::Mqtt => {
                let client_id = format!("tinymq-bridge-{}", config.broker_id);
                let mut mqtt = MqttClientConfig::new(checked.servers.clone(), client_id);
                mqtt.username = credentials.username.clone();
                mqtt.password = credentials.password.clone();
                mqtt.version = config.mqtt_version;
                mqtt.origin = config.broker_id.clone();
                if config.qos == 1 {
                    mqtt.qos = QoS::AtLeastOnce;
                }
                let mut client = MqttClient::new(mqtt, now);
                for filter in &subjects {
                    client.subscribe(filter).map_err(|e| io::Error::other(format!("bridge filter {filter:?}: {e}")))?;
                }
                Ok(Link::Mqtt(client))
            }
        }
    }

    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        match self {
            Link::Nats(c) => c.poll_timeout(),
            Link::Mqtt(c) => c.poll_timeout(),
        }
    }

    pub(super) fn next_server(&mut self, now: Instant) -> Option<String> {
        match self {
            Link::Nats(c) => c.next_server(now).map(str::to_owned),
            Link::Mqtt(c) => c.next_server(now).map(str::to_owned),
        }
    }

    pub(super) fn server(&self) -> String {
        match self {
            Link::Nats(c) => c.server(),
            Link::Mqtt(c) => c.server(),
        }
        .unwrap_or_default()
        .to_owned()
    }

    pub(super) fn is_connected(&self) -> bool {
        match self {
            Link::Nats(c) => c.is_connected(),
            Link::Mqtt(c) => c.is_connected(),
        }
    }

    /// Whether a NATS server's INFO came and TLS must start now.
    pub(super) fn wants_tls(&self) -> bool {
        matches!(self, Link::Nats(c) if c.wants_tls())
    }

    pub(super) fn handle_tls_started(&mut self, now: Instant) {
        if let Link::Nats(c) = self {
            c.handle_tls_started(now);
        }
    }

    pub(super) fn handle_connected(&mut self, now: Instant) {
        match self {
            Link::Nats(c) => c.handle_connected(now),
            Link::Mqtt(c) => c.handle_connected(now),
        }
    }

    pub(super) fn handle_disconnected(&mut self, now: Instant) {
        match self {
            Link::Nats(c) => c.handle_disconnected(now),
            Link::Mqtt(c) => c.handle_disconnected(now),
        }
    }

    /// Takes `chunk[..len]`, read from the socket: NATS payloads wholly in
    /// it are shared ranges of it, not copies.
    pub(super) fn handle_chunk(&mut self, now: Instant, chunk: &Arc<[u8]>, len: usize) -> Result<(), String> {
        match self {
            Link::Nats(c) => c.handle_shared_input(now, chunk, len).map_err(|e| e.to_string()),
            Link::Mqtt(c) => c.handle_input(now, &chunk[..len]).map_err(|e| e.to_string()),
        }
    }

    pub(super) fn handle_timeout(&mut self, now: Instant) -> Result<(), String> {
        match self {
            Link::Nats(c) => c.handle_timeout(now).map_err(|e| e.to_string()),
            Link::Mqtt(c) => c.handle_timeout(now).map_err(|e| e.to_string()),
        }
    }

    pub(super) fn outbound(&self) -> &Outbound {
        match self {
            Link::Nats(c) => c.outbound(),
            Link::Mqtt(c) => c.outbound(),
        }
    }

    pub(super) fn outbound_mut(&mut self) -> &mut Outbound {
        match self {
            Link::Nats(c) => c.outbound_mut(),
            Link::Mqtt(c) => c.outbound_mut(),
        }
    }

    /// Queues a message for the far side's `name`.
    pub(super) fn publish(
        &mut self,
        checked: &Checked,
        name: &str,
        retained: bool,
        payload: &[u8],
    ) -> Result<(), Refused> {
        match self {
            Link::Nats(c) => {
                let headers = if retained { &checked.retained } else { &checked.live };
                c.publish(name, Some(headers), payload).map_err(|e| match e {
                    nats::SendError::NotConnected => Refused::NotConnected,
                    nats::SendError::OutboundFull { .. } => Refused::Full,
                    other => Refused::Unsendable(other.to_string()),
                })
            }
            Link::Mqtt(c) => c.publish(name, payload, retained).map_err(|e| match e {
                mqtt::SendError::NotConnected => Refused::NotConnected,
                mqtt::SendError::OutboundFull { .. } => Refused::Full,
                mqtt::SendError::WindowFull { .. } => Refused::Window,
                other => Refused::Unsendable(other.to_string()),
            }),
        }
    }

    /// Queues a QoS 1 publish whose packet id and window the caller keeps
    /// (MQTT only: a NATS link cannot take one, and refuses it).
    pub(super) fn publish_with_id(
        &mut self,
        name: &str,
        retained: bool,
        payload: &[u8],
        packet_id: u16,
        dup: bool,
    ) -> Result<(), Refused> {
        match self {
            Link::Nats(_) => Err(Refused::Unsendable("NATS has no QoS 1".to_owned())),
            Link::Mqtt(c) => c.publish_with_id(name, payload, retained, packet_id, dup).map_err(|e| match e {
                mqtt::SendError::NotConnected => Refused::NotConnected,
                mqtt::SendError::OutboundFull { .. } => Refused::Full,
                other => Refused::Unsendable(other.to_string()),
            }),
        }
    }

    /// QoS 1 publishes the connection may have in flight (MQTT: the
    /// configured window, or the server's Receive Maximum if lower).
    pub(super) fn send_window(&self) -> usize {
        match self {
            Link::Nats(_) => 0,
            Link::Mqtt(c) => c.send_window(),
        }
    }

    /// Acknowledges a QoS 1 message from the far side.
    pub(super) fn ack(&mut self, ticket: AckTicket) {
        if let Link::Mqtt(c) = self {
            c.ack(ticket);
        }
    }

    /// QoS 1 publishes waiting for the far side's acknowledgement.
    pub(super) fn in_flight(&self) -> usize {
        match self {
            Link::Nats(_) => 0,
            Link::Mqtt(c) => c.in_flight(),
        }
    }

    pub(super) fn poll_event(&mut self) -> Option<LinkEvent> {
        match self {
            Link::Nats(c) => loop {
                return Some(match c.poll_event()? {
                    NatsEvent::Connected { server, .. } => LinkEvent::Connected(server),
                    NatsEvent::Message(message) => LinkEvent::Message(Incoming {
                        retained: false,
                        origin: None,
                        headers: Some(message.headers),
                        name: message.subject,
                        payload: message.payload,
                        ack: None,
                    }),
                    NatsEvent::Error { kind, text } => LinkEvent::Error(format!("-ERR {text} ({kind:?})")),
                    NatsEvent::SlowConsumer { dropped } => LinkEvent::Dropped(dropped),
                    NatsEvent::Disconnected { server } => LinkEvent::Disconnected(server),
                    NatsEvent::Info(_) => continue,
                });
            },
            Link::Mqtt(c) => Some(match c.poll_event()? {
                MqttEvent::Connected { server, level } => {
                    log::debug!("MQTT bridge to {server} at {level:?}");
                    LinkEvent::Connected(server)
                }
                MqttEvent::Message(message) => LinkEvent::Message(Incoming {
                    name: message.topic.into(),
                    payload: Payload::from(Arc::<[u8]>::from(message.payload)),
                    retained: message.retain,
                    origin: message.origin,
                    headers: None,
                    ack: message.ack,
                }),
                MqttEvent::SubscriptionRefused { filter, code } => {
                    LinkEvent::Error(format!("the server refused the subscription to {filter:?} (code {code:#04x})"))
                }
                MqttEvent::SlowConsumer { dropped } => LinkEvent::Dropped(dropped),
                MqttEvent::PubAck { packet_id } => LinkEvent::PubAck(packet_id),
                MqttEvent::Disconnected { server } => LinkEvent::Disconnected(server),
            }),
        }
    }
}

/// The far side's names for the `in` filters, without repeats.
fn remote_filters(checked: &Checked) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for filter in &checked.inbound {
        let mapped: Vec<String> = match &checked.mapping {
            Mapping::Nats(mapping) => mapping.filter_to_subjects(filter).into_iter().collect(),
            Mapping::Mqtt(prefix) => vec![prefix.to_remote(filter.as_str())],
        };
        for name in mapped {
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    names
}

/// A bridge's socket: plain TCP, or TLS over it (from the start for MQTT,
/// after INFO for NATS).
pub(super) enum LinkSocket {
    Plain(TcpStream),
    Tls(Box<TlsStream>),
}

impl LinkSocket {
    pub(super) fn tcp_mut(&mut self) -> &mut TcpStream {
        match self {
            LinkSocket::Plain(socket) => socket,
            LinkSocket::Tls(tls) => tls.socket_mut(),
        }
    }

    /// Starts TLS on a plain socket, checking the certificate against
    /// `server`'s host name.
    pub(super) fn start_tls(self, tls: &ClientTls, server: &str) -> io::Result<LinkSocket> {
        match self {
            LinkSocket::Plain(socket) => {
                let name = ClientTls::server_name(server).map_err(io::Error::other)?;
                Ok(LinkSocket::Tls(Box::new(TlsStream::client(socket, tls, name)?)))
            }
            tls @ LinkSocket::Tls(_) => Ok(tls),
        }
    }

    pub(super) fn read(&mut self, buf: &mut [u8], cipher: &mut Vec<u8>) -> io::Result<usize> {
        match self {
            LinkSocket::Plain(socket) => socket.read(buf),
            LinkSocket::Tls(tls) => tls.read_plain(buf, cipher),
        }
    }

    pub(super) fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            LinkSocket::Plain(socket) => socket.write_vectored(bufs),
            LinkSocket::Tls(tls) => tls.write_plain(bufs),
        }
    }

    /// Sends ciphertext TLS holds (its handshake, or what a blocked socket
    /// left); `WouldBlock` when the socket is full.
    pub(super) fn send_pending(&mut self) -> io::Result<()> {
        match self {
            LinkSocket::Plain(_) => Ok(()),
            LinkSocket::Tls(tls) => tls.send_pending(),
        }
    }
}
