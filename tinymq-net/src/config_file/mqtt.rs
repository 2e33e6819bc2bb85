//! `[mqtt]`: the MQTT listeners and the settings of MQTT sessions.

use serde::Deserialize;

use super::{ConfigError, at_least_one, invalid, socket_addr};
use crate::config::BrokerConfig;
use crate::transport::ListenAddr;

/// `[mqtt]`: MQTT 3.1.1 and 5.0 listeners (none by default).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct MqttSection {
    /// `address`: HOST:PORT of an MQTT listener.
    pub address: Option<String>,
    /// `tls_address`: HOST:PORT of an MQTT-over-TLS listener (needs `[tls]`).
    pub tls_address: Option<String>,
    /// `max_packet_bytes`: the largest packet a client may send.
    pub max_packet_bytes: Option<usize>,
    /// `max_inflight`: QoS 1 messages sent to a client and not yet
    /// acknowledged.
    pub max_inflight: Option<u16>,
    /// `topic_alias_maximum`: topic aliases a client may set (0: none).
    pub topic_alias_maximum: Option<u16>,
}

impl MqttSection {
    /// Adds the section's listeners and settings to `config` (after
    /// `[tls]` was read).
    pub(super) fn apply(&self, config: &mut BrokerConfig) -> Result<(), ConfigError> {
        if let Some(address) = &self.address {
            config.listeners.push(ListenAddr::Mqtt(socket_addr("mqtt.address", address)?));
        }
        if let Some(address) = &self.tls_address {
            if config.tls.is_none() {
                return Err(invalid("mqtt.tls_address", "an MQTT-over-TLS listener needs [tls] cert and key"));
            }
            config.listeners.push(ListenAddr::Mqtts(socket_addr("mqtt.tls_address", address)?));
        }
        if let Some(bytes) = self.max_packet_bytes {
            // The remaining length's four bytes say at most 256 MiB.
            let max = tinymq_core::mqtt::MAX_REMAINING_LENGTH + 5;
            config.mqtt.max_packet_size = at_least_one("mqtt.max_packet_bytes", bytes)?.min(max);
        }
        if let Some(inflight) = self.max_inflight {
            config.mqtt.max_inflight = at_least_one("mqtt.max_inflight", usize::from(inflight))? as u16;
        }
        if let Some(aliases) = self.topic_alias_maximum {
            config.mqtt.topic_alias_maximum = aliases;
        }
        Ok(())
    }
}

/// The `[mqtt]` part of the printed default file.
pub(super) fn default_text() -> String {
    let defaults = crate::BrokerConfig::default().mqtt;
    format!(
        r##"# MQTT 3.1.1 and 5.0 clients (README.md, "MQTT and WebSocket"): the
# same topics, users and limits as every other face.
[mqtt]
# HOST:PORT of the MQTT listener (--mqtt; default: none).
# address = "127.0.0.1:1884"
# HOST:PORT of MQTT over TLS, with the [tls] certificate (--mqtts;
# default: none).
# tls_address = "127.0.0.1:8884"
# The largest packet a client may send, in bytes; larger ones close its
# connection (MQTT 5: DISCONNECT 0x95).
max_packet_bytes = {max_packet}
# QoS 1 messages sent to a client and not yet acknowledged; more wait
# (lowered to a client's own Receive Maximum).
max_inflight = {inflight}
# Topic aliases an MQTT 5 client may set; 0 allows none.
topic_alias_maximum = {aliases}
"##,
        max_packet = defaults.max_packet_size,
        inflight = defaults.max_inflight,
        aliases = defaults.topic_alias_maximum,
    )
}

#[cfg(test)]
mod tests {
    use crate::ConfigFile;
    use crate::transport::ListenAddr;

    #[test]
    fn the_mqtt_table_adds_its_listener_and_settings() {
        let file = ConfigFile::parse("[mqtt]\naddress = \"127.0.0.1:1884\"\nmax_inflight = 5\n").unwrap();
        let config = file.broker_config().unwrap();
        assert!(config.listeners.contains(&ListenAddr::Mqtt("127.0.0.1:1884".parse().unwrap())));
        assert_eq!(config.mqtt.max_inflight, 5);
        let error = ConfigFile::parse("[mqtt]\ntls_address = \"127.0.0.1:8884\"\n").unwrap().broker_config();
        assert!(error.unwrap_err().to_string().contains("mqtt.tls_address"));
        assert!(ConfigFile::parse("[mqtt]\nmax_inflight = 0\n").unwrap().broker_config().is_err());
    }

    #[test]
    fn an_mqtt_client_has_the_binary_faces_window_by_default() {
        let config = crate::BrokerConfig::default();
        assert_eq!(config.mqtt_session().max_inflight, 1024);
        assert_eq!(config.mqtt_session().max_inflight, config.session.max_inflight);
        assert!(ConfigFile::default_text().contains("\nmax_inflight = 1024\n"));
        let config = ConfigFile::parse("").unwrap().broker_config().unwrap();
        assert_eq!(config.mqtt.max_inflight, 1024);
    }
}
