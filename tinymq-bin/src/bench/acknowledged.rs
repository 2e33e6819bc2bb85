//! `tinymq bench --qos 1` against tinymq: acknowledged delivery, measured
//! end to end with the library client. Publishers send QoS 1 with a window
//! of `--window` unacknowledged messages and wait for every PubAck at the
//! end; subscribers hold persistent sessions with QoS 1 subscriptions, so
//! under `--durability immediate` each acknowledgement waits for the
//! queued copies' commit, and under `batched` for their queueing.
//! Published counts a message once acknowledged.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use tinymq_net::{Address, ClientOptions};

use super::workload::{Settings, report_latencies};
use crate::broker::Network;

fn options(settings: &Settings, address: &str, client_id: &str) -> ClientOptions {
    let address = match settings.network {
        Network::Tcp => Address::tcp(address),
        Network::Unix => Address::unix(address),
    };
    let mut options =
        ClientOptions::new(address).client_id(client_id).request_timeout(settings.timeout.max(Duration::from_secs(30)));
    if let Some(tls) = &settings.tls {
        options = options.tls(tls.clone());
    }
    options
}

pub(super) fn bench(settings: &Settings, window: u16) -> Result<(), String> {
    let topic = settings.topic.clone();
    let start = Instant::now();
    let ready = Arc::new(Barrier::new(settings.publishers + settings.subscribers + 1));
    let expected = settings.count * settings.publishers as u64;
    let sub_address = settings.sub_address.clone().unwrap_or_else(|| settings.address.clone());
    let delivered = Arc::new(AtomicU64::new(0));

    let mut subscribers = Vec::new();
    for i in 0..settings.subscribers {
        let id = format!("bench-qos-sub-{}-{i}", std::process::id());
        let mut client = options(settings, &sub_address, &id)
            .persistent_session(true)
            .connect()
            .map_err(|e| format!("a subscriber: {e}"))?;
        client.subscribe_qos1(&topic).map_err(|e| format!("a subscriber: {e}"))?;
        let (ready, delivered, timeout) = (ready.clone(), delivered.clone(), settings.timeout);
        let cleanup = options(settings, &sub_address, &id);
        subscribers.push(std::thread::spawn(move || -> Result<(Vec<u32>, Instant), String> {
            ready.wait();
            let mut latencies = Vec::with_capacity(expected as usize);
            let mut last = Instant::now();
            while (latencies.len() as u64) < expected {
                let Some(message) = client.recv_timeout(timeout).map_err(|e| format!("a subscriber: {e}"))? else {
                    return Err(format!("a subscriber got {} of {expected}: nothing for {timeout:?}", latencies.len()));
                };
                let Some(stamp) = message.payload.first_chunk::<8>() else { continue };
                let now = start.elapsed().as_nanos() as u64;
                latencies
                    .push(u32::try_from(now.saturating_sub(u64::from_be_bytes(*stamp)) / 1000).unwrap_or(u32::MAX));
                last = Instant::now();
                delivered.fetch_add(1, Ordering::Relaxed);
            }
            drop(client);
            // A clean session under the same id discards the stored one.
            if let Ok(client) = cleanup.connect() {
                let _ = client.disconnect();
            }
            Ok((latencies, last))
        }));
    }

    let mut publishers = Vec::new();
    for i in 0..settings.publishers {
        let id = format!("bench-qos-pub-{}-{i}", std::process::id());
        let mut client = options(settings, &settings.address, &id)
            .max_inflight(window)
            .connect()
            .map_err(|e| format!("a publisher: {e}"))?;
        let (ready, topic, count, size) = (ready.clone(), topic.clone(), settings.count, settings.size);
        publishers.push(std::thread::spawn(move || -> Result<(), String> {
            let mut payload = vec![0x5a; size];
            ready.wait();
            for _ in 0..count {
                payload[..8].copy_from_slice(&(start.elapsed().as_nanos() as u64).to_be_bytes());
                client.publish_qos1(&topic, &payload, false).map_err(|e| format!("a publisher: {e}"))?;
            }
            let left = client.wait_acknowledged(Duration::from_secs(60)).map_err(|e| format!("a publisher: {e}"))?;
            if left > 0 {
                return Err(format!("a publisher: {left} of {count} not acknowledged"));
            }
            client.disconnect().map_err(|e| format!("a publisher: {e}"))
        }));
    }

    ready.wait();
    let began = Instant::now();
    let mut errors = Vec::new();
    for publisher in publishers {
        if let Err(error) = publisher.join().map_err(|_| "a publisher panicked".to_owned()).and_then(|r| r) {
            errors.push(error);
        }
    }
    let publish_secs = began.elapsed().as_secs_f64();
    let mut latencies = Vec::new();
    let mut last = began;
    for subscriber in subscribers {
        match subscriber.join().map_err(|_| "a subscriber panicked".to_owned()).and_then(|r| r) {
            Ok((lat, at)) => {
                latencies.extend(lat);
                last = last.max(at);
            }
            Err(error) => errors.push(error),
        }
    }
    println!(
        "workload: tinymq QoS 1, {} publisher(s) (window {window}) -> {} persistent subscriber(s), {expected} messages of {} bytes",
        settings.publishers, settings.subscribers, settings.size
    );
    println!("acknowledged: {:.0} msg/s ({expected} in {publish_secs:.3} s)", expected as f64 / publish_secs);
    if settings.subscribers > 0 {
        let secs = last.duration_since(began).as_secs_f64();
        println!("delivered: {:.0} msg/s ({} in {secs:.3} s)", latencies.len() as f64 / secs, latencies.len());
        report_latencies(&mut latencies);
    }
    if !errors.is_empty() {
        return Err(errors.join("; "));
    }
    Ok(())
}
