//! The settings of an [`MqttClient`](super::MqttClient) and the protocol
//! levels it speaks.

use std::time::Duration;

use super::packet::{ProtocolVersion, QoS};

/// Which protocol level to speak.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MqttVersion {
    /// MQTT 5, falling back to 3.1.1 (with the bridge bit, then without)
    /// when the server refuses it.
    #[default]
    Auto,
    /// MQTT 3.1.1 only, with the bridge bit, then without.
    V311,
    /// MQTT 5 only.
    V5,
}

/// The level a connection uses; the client moves down this ladder when a
/// server refuses a level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MqttLevel {
    /// MQTT 5.
    V5,
    /// MQTT 3.1.1 at protocol level `0x84`: Mosquitto's bridge bit.
    V311Bridge,
    /// MQTT 3.1.1 at protocol level 4.
    V311,
}

impl MqttLevel {
    /// The codec's version for this level.
    pub fn version(self) -> ProtocolVersion {
        match self {
            MqttLevel::V5 => ProtocolVersion::V5,
            MqttLevel::V311Bridge | MqttLevel::V311 => ProtocolVersion::V311,
        }
    }

    /// Whether the server keeps our own publishes from us (No Local, or
    /// the bridge bit).
    pub fn no_local(self) -> bool {
        self != MqttLevel::V311
    }
}

/// Settings of an [`MqttClient`](super::MqttClient);
/// [`MqttClientConfig::new`] gives the defaults.
#[derive(Clone, PartialEq, Eq)]
pub struct MqttClientConfig {
    /// Servers to connect to, `host:port` (an `mqtt://` or `mqtts://` in
    /// front is dropped), tried in turn.
    pub servers: Vec<String>,
    /// The client identifier (unique on the server: a second connection
    /// with it takes the first one over).
    pub client_id: String,
    /// User name, if any.
    pub username: Option<String>,
    /// Password, if any.
    pub password: Option<String>,
    /// Which protocol level to speak (default [`MqttVersion::Auto`]).
    pub version: MqttVersion,
    /// Origin put in every publish's
    /// [`ORIGIN_PROPERTY`](super::ORIGIN_PROPERTY) (MQTT 5); empty for none.
    pub origin: String,
    /// Keep alive: PINGREQ this often (default 30 s). The server's
    /// `Server Keep Alive` replaces it.
    pub keep_alive: Duration,
    /// Longest time from dialing to SUBACK (default 5 s).
    pub handshake_timeout: Duration,
    /// First reconnect delay; it doubles with every failed attempt
    /// (default 100 ms).
    pub reconnect_min: Duration,
    /// Cap of the reconnect delay (default 5 s).
    pub reconnect_max: Duration,
    /// Bytes the outbound queue holds before publishes are refused
    /// (default 8 MiB).
    pub max_outbound: usize,
    /// Events held before new ones are dropped (default 65536).
    pub max_pending_events: usize,
    /// Largest packet taken from the server (default 1 MiB + 4 KiB).
    pub max_packet_size: usize,
    /// The QoS of every publish and subscription (default QoS 0). At QoS 1
    /// the session on the server is persistent (clean start off, and
    /// [`MqttClientConfig::session_expiry`] at MQTT 5): a stable
    /// `client_id` finds what was published while the client was away.
    pub qos: QoS,
    /// QoS 1 publishes sent before a PUBACK must come (default 64; the
    /// server's Receive Maximum lowers it).
    pub max_inflight: u16,
    /// MQTT 5, QoS 1: seconds the server keeps the session after the
    /// connection ends (default one day).
    pub session_expiry: u32,
}

impl std::fmt::Debug for MqttClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The password stays out of logs.
        f.debug_struct("MqttClientConfig")
            .field("servers", &self.servers)
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<password>"))
            .field("version", &self.version)
            .field("origin", &self.origin)
            .field("keep_alive", &self.keep_alive)
            .field("qos", &self.qos)
            .finish_non_exhaustive()
    }
}

impl MqttClientConfig {
    /// Defaults, for `servers` and `client_id`.
    pub fn new(servers: Vec<String>, client_id: impl Into<String>) -> Self {
        MqttClientConfig {
            servers,
            client_id: client_id.into(),
            username: None,
            password: None,
            version: MqttVersion::Auto,
            origin: String::new(),
            keep_alive: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(5),
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(5),
            max_outbound: 8 << 20,
            max_pending_events: 1 << 16,
            max_packet_size: (1 << 20) + 4096,
            qos: QoS::AtMostOnce,
            max_inflight: 64,
            session_expiry: 86_400,
        }
    }
}
