//! `[[bridge]]` tables: a bridge to a NATS cluster or an MQTT broker.

use std::path::PathBuf;

use serde::Deserialize;
use tinymq_core::TopicLimits;
use tinymq_core::mqtt::MqttVersion;

use super::{ConfigError, invalid};
use crate::bridge::{BridgeConfig, BridgeKind};

/// `[[bridge]]`: a bridge to a NATS cluster or an MQTT broker (see
/// [`BridgeConfig`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct BridgeSection {
    /// `"nats"` or `"mqtt"`; by default what the servers' scheme says
    /// (`mqtt://`, `mqtts://`), else NATS.
    pub kind: Option<String>,
    /// Servers, `nats://HOST:PORT`, `tls://HOST:PORT`, `mqtt://HOST:PORT`
    /// or `mqtts://HOST:PORT`.
    pub servers: Vec<String>,
    /// Filters sent to NATS.
    pub out: Vec<String>,
    /// Filters taken in from NATS.
    #[serde(rename = "in")]
    pub inbound: Vec<String>,
    /// Filters both ways.
    pub both: Vec<String>,
    /// The subject prefix.
    pub prefix: Option<String>,
    /// This broker's id in the origin header (default: made from the
    /// process id and the time).
    pub broker_id: Option<String>,
    /// Messages held while the bridge is down.
    pub queue_limit: Option<usize>,
    /// User name for the far side.
    pub username: Option<String>,
    /// Password for the far side.
    pub password: Option<String>,
    /// NATS authentication token.
    pub token: Option<String>,
    /// NATS bridges: a file holding a user's NKEY seed (`SU...`).
    pub nkey_seed_file: Option<PathBuf>,
    /// NATS bridges: a `.creds` file (user JWT and seed).
    pub creds_file: Option<PathBuf>,
    /// TLS to the far side (also on with `tls://` or `mqtts://` servers).
    pub tls: Option<bool>,
    /// The CA certificates (PEM) the far side's certificate is checked
    /// against; required with TLS.
    pub ca_file: Option<PathBuf>,
    /// A client certificate (PEM) for a far side that requires one
    /// (mutual TLS); with `key_file`.
    pub cert_file: Option<PathBuf>,
    /// The private key of `cert_file` (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
    /// MQTT bridges: `"5"` (falling back to 3.1.1 when refused, the
    /// default) or `"3.1.1"`.
    pub mqtt_version: Option<String>,
    /// The user whose namespace is bridged (default: the public one).
    pub namespace: Option<String>,
    /// MQTT bridges: 0 (the default) or 1, the QoS of every message
    /// bridged; 1 needs a `broker_id`, which names the far side's session.
    pub qos: Option<u8>,
}

impl BridgeSection {
    /// The bridge the `i`-th table describes, checked.
    pub(super) fn bridge_config(&self, i: usize, limits: &TopicLimits) -> Result<BridgeConfig, ConfigError> {
        let key = |name: &str| format!("bridge[{}].{name}", i + 1);
        if self.servers.is_empty() {
            return Err(invalid(
                &key("servers"),
                "a bridge needs at least one server, nats://HOST:PORT or mqtt://HOST:PORT",
            ));
        }
        if self.qos.is_some_and(|qos| qos > 0) && self.broker_id.is_none() {
            return Err(invalid(
                &key("broker_id"),
                "qos = 1 needs a broker_id that stays the same across restarts: it names the far side's session",
            ));
        }
        let broker_id = self.broker_id.clone().unwrap_or_else(crate::bridge::default_broker_id);
        let mut bridge = BridgeConfig::new(self.servers.clone(), broker_id);
        match self.kind.as_deref() {
            None => {}
            Some("nats") => bridge.kind = BridgeKind::Nats,
            Some("mqtt") => bridge.kind = BridgeKind::Mqtt,
            Some(other) => return Err(invalid(&key("kind"), format!("{other:?}: expected \"nats\" or \"mqtt\""))),
        }
        bridge.mqtt_version = match self.mqtt_version.as_deref() {
            None => MqttVersion::Auto,
            Some("5") => MqttVersion::Auto,
            Some("3.1.1") => MqttVersion::V311,
            Some(other) => {
                return Err(invalid(&key("mqtt_version"), format!("{other:?}: expected \"5\" or \"3.1.1\"")));
            }
        };
        bridge.username = self.username.clone();
        bridge.password = self.password.clone();
        bridge.token = self.token.clone();
        bridge.nkey_seed_file = self.nkey_seed_file.clone();
        bridge.creds_file = self.creds_file.clone();
        bridge.tls = self.tls.unwrap_or(false);
        bridge.ca_file = self.ca_file.clone();
        bridge.cert_file = self.cert_file.clone();
        bridge.key_file = self.key_file.clone();
        bridge.namespace = self.namespace.clone().unwrap_or_default();
        bridge.qos = self.qos.unwrap_or(0);
        bridge.out = self.out.iter().chain(&self.both).cloned().collect();
        bridge.inbound = self.inbound.iter().chain(&self.both).cloned().collect();
        bridge.prefix = self.prefix.clone().unwrap_or_default();
        if let Some(limit) = self.queue_limit {
            bridge.queue_limit = limit;
        }
        bridge.validate(limits).map_err(|e| invalid(&format!("bridge[{}]", i + 1), e.to_string()))?;
        Ok(bridge)
    }
}
