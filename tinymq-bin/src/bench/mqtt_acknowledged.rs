//! `tinymq bench --protocol mqtt --qos 1`: acknowledged delivery over MQTT
//! 3.1.1, driven the way `--protocol tinymq --qos 1` drives tinymq
//! (`acknowledged.rs`), so that tinymq's MQTT face and another MQTT broker
//! (mosquitto) are measured alike. Publishers keep `--window` QoS 1
//! PUBLISHes unacknowledged, writing what the window allows in one write
//! and reading PUBACKs in bulk; subscribers hold sessions kept after the
//! connection (Clean Session 0) with QoS 1 subscriptions, and acknowledge
//! what each read brought in one write. Published counts a message once
//! PUBACKed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Instant;

use super::client::Client;
use super::finish_acknowledged;
use super::mqtt;
use super::workload::Settings;

pub(super) fn bench(settings: &Settings, window: u16) -> Result<(), String> {
    let topic = settings.protocol.topic(&settings.topic);
    let start = Instant::now();
    let ready = Arc::new(Barrier::new(settings.publishers + settings.subscribers + 1));
    let expected = settings.count * settings.publishers as u64;
    let delivered = Arc::new(AtomicU64::new(0));
    let sub_settings = match &settings.sub_address {
        Some(address) => Settings { address: address.clone(), ..settings.clone() },
        None => settings.clone(),
    };

    let mut subscribers = Vec::new();
    for i in 0..settings.subscribers {
        let id = format!("bench-mqtt-qos-sub-{}-{i}", std::process::id());
        let mut connect = Vec::new();
        mqtt::encode_connect_session(&id, false, &mut connect);
        let mut client = Client::connect_with(&sub_settings, &connect)?;
        client.subscribe(&topic, 1)?;
        let (ready, delivered, sub_settings) = (ready.clone(), delivered.clone(), sub_settings.clone());
        subscribers.push(std::thread::spawn(move || -> Result<(Vec<u32>, Instant), String> {
            ready.wait();
            client.set_read_timeout(sub_settings.timeout)?;
            let mut latencies = Vec::with_capacity(expected.min(10_000_000) as usize);
            let result = client.read_messages(|payload| {
                if let Some(stamp) = payload.first_chunk::<8>() {
                    let now = start.elapsed().as_nanos() as u64;
                    // Microseconds, saturating: 71 minutes is plenty.
                    latencies
                        .push(u32::try_from(now.saturating_sub(u64::from_be_bytes(*stamp)) / 1000).unwrap_or(u32::MAX));
                }
                (latencies.len() as u64) < expected
            });
            let last = Instant::now();
            delivered.fetch_add(latencies.len() as u64, Ordering::Relaxed);
            client.close();
            // A clean session under the same id discards the kept one.
            if let Ok(client) = Client::connect(&sub_settings, &id) {
                client.close();
            }
            result.map_err(|e| format!("a subscriber got {} of {expected}: {e}", latencies.len()))?;
            Ok((latencies, last))
        }));
    }

    let mut publishers = Vec::new();
    for i in 0..settings.publishers {
        let mut client = Client::connect(settings, &format!("bench-mqtt-qos-pub-{}-{i}", std::process::id()))?;
        let (ready, topic, count, size) = (ready.clone(), topic.clone(), settings.count, settings.size);
        publishers.push(std::thread::spawn(move || -> Result<(), String> {
            let mut payload = vec![0x5a; size];
            let mut batch = Vec::new();
            ready.wait();
            let (mut sent, mut acked) = (0u64, 0u64);
            while acked < count {
                batch.clear();
                while sent < count && sent - acked < u64::from(window) {
                    payload[..8].copy_from_slice(&(start.elapsed().as_nanos() as u64).to_be_bytes());
                    // Ids 1..=65535 in turn: brokers acknowledge in order,
                    // so with at most 65535 in flight none is in use.
                    mqtt::encode_publish_qos1(&topic, &payload, (sent % 65_535) as u16 + 1, &mut batch);
                    sent += 1;
                }
                if !batch.is_empty() {
                    client.write(&batch)?;
                }
                acked += client.read_pubacks().map_err(|e| format!("a publisher, {acked} acknowledged: {e}"))?;
            }
            client.close();
            Ok(())
        }));
    }

    finish_acknowledged(&ready, publishers, subscribers, settings, window, "mqtt", "subscriber(s) with kept sessions")
}
