//! `tinymq bench --qos 1` against tinymq: acknowledged delivery. Publishers
//! send QoS 1 with a window of `--window` unacknowledged messages and wait
//! for every PubAck at the end; subscribers hold persistent sessions with
//! QoS 1 subscriptions, so under `--durability immediate` each
//! acknowledgement waits for the queued copies' commit, and under
//! `batched` for their queueing. Published counts a message once
//! acknowledged.
//!
//! Over TCP without TLS the peers are the core's [`ClientSession`] on a
//! plain socket, writing what a window allows in one write and reading
//! acknowledgements in bulk, so the generator costs little next to the
//! broker; otherwise the library client (`tinymq_net::Client`), one write
//! per message.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use std::io::{Read, Write};
use std::net::TcpStream;

use tinymq_core::Qos;
use tinymq_core::client::{ClientConfig, ClientError, ClientEvent, ClientSession};
use tinymq_net::{Address, ClientOptions};

use super::finish_acknowledged;
use super::workload::Settings;
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

    let raw = settings.network == Network::Tcp && settings.tls.is_none();
    let mut subscribers = Vec::new();
    for i in 0..settings.subscribers {
        let id = format!("bench-qos-sub-{}-{i}", std::process::id());
        let (ready, delivered, timeout) = (ready.clone(), delivered.clone(), settings.timeout);
        if raw {
            let config = ClientConfig {
                client_id: id.clone(),
                persistent: true,
                keep_alive: Duration::ZERO,
                ..ClientConfig::default()
            };
            let mut peer = RawPeer::connect(&sub_address, &config, timeout)?;
            peer.session.subscribe_qos(Instant::now(), &topic, Qos::AtLeastOnce).map_err(|e| e.to_string())?;
            peer.write()?;
            while !std::iter::from_fn(|| peer.session.poll_event()).any(|e| matches!(e, ClientEvent::SubAck { .. })) {
                peer.read()?;
            }
            let address = sub_address.clone();
            subscribers.push(std::thread::spawn(move || -> Result<(Vec<u32>, Instant), String> {
                ready.wait();
                let result = raw_subscriber(peer, expected, start, &delivered);
                // A clean session under the same id discards the stored one.
                let clean = ClientConfig { client_id: id, keep_alive: Duration::ZERO, ..ClientConfig::default() };
                if let Ok(mut peer) = RawPeer::connect(&address, &clean, timeout) {
                    peer.session.disconnect(Instant::now());
                    let _ = peer.write();
                }
                result
            }));
            continue;
        }
        let mut client = options(settings, &sub_address, &id)
            .persistent_session(true)
            .connect()
            .map_err(|e| format!("a subscriber: {e}"))?;
        client.subscribe_qos1(&topic).map_err(|e| format!("a subscriber: {e}"))?;
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
        let (ready, topic, count, size) = (ready.clone(), topic.clone(), settings.count, settings.size);
        if raw {
            let config = ClientConfig {
                client_id: id,
                max_inflight: window,
                keep_alive: Duration::ZERO,
                ..ClientConfig::default()
            };
            let peer = RawPeer::connect(&settings.address, &config, settings.timeout.max(Duration::from_secs(30)))?;
            publishers.push(std::thread::spawn(move || -> Result<(), String> {
                ready.wait();
                raw_publisher(peer, &topic, count, size, start).map_err(|e| format!("a publisher: {e}"))
            }));
            continue;
        }
        let mut client = options(settings, &settings.address, &id)
            .max_inflight(window)
            .connect()
            .map_err(|e| format!("a publisher: {e}"))?;
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

    finish_acknowledged(&ready, publishers, subscribers, settings, window, "tinymq", "persistent subscriber(s)")
}

/// One connection driven by a [`ClientSession`] on a blocking socket.
struct RawPeer {
    stream: TcpStream,
    session: ClientSession,
    buffer: Vec<u8>,
    unread: usize,
}

impl RawPeer {
    fn connect(address: &str, config: &ClientConfig, timeout: Duration) -> Result<Self, String> {
        let stream = TcpStream::connect(address).map_err(|e| format!("connect {address}: {e}"))?;
        let _ = stream.set_nodelay(true);
        stream.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
        let session = ClientSession::new(config, Instant::now()).map_err(|e| e.to_string())?;
        let mut peer = RawPeer { stream, session, buffer: vec![0; 256 * 1024], unread: 0 };
        peer.session.connect(Instant::now());
        loop {
            peer.write()?;
            peer.read()?;
            while let Some(event) = peer.session.poll_event() {
                match event {
                    ClientEvent::Connected { .. } => return Ok(peer),
                    ClientEvent::Disconnected(reason) => return Err(format!("refused: {reason}")),
                    _ => {}
                }
            }
        }
    }

    /// Writes everything the session has queued.
    fn write(&mut self) -> Result<(), String> {
        while let Some(bytes) = self.session.poll_transmit() {
            let written = self.stream.write(bytes).map_err(|e| format!("write: {e}"))?;
            self.session.advance_transmit(written);
        }
        Ok(())
    }

    /// One read (waiting up to the read timeout), decoded into events.
    fn read(&mut self) -> Result<(), String> {
        let read = self.stream.read(&mut self.buffer[self.unread..]).map_err(|e| format!("read: {e}"))?;
        if read == 0 {
            return Err("the broker closed the connection".into());
        }
        self.unread += read;
        let used = self.session.handle_input(Instant::now(), &self.buffer[..self.unread]).map_err(|e| e.to_string())?;
        self.buffer.copy_within(used..self.unread, 0);
        self.unread -= used;
        Ok(())
    }
}

/// Publishes `count` QoS 1 messages, as many in flight as the window
/// allows, written in one go per window's worth; returns once every one is
/// acknowledged.
fn raw_publisher(mut peer: RawPeer, topic: &str, count: u64, size: usize, start: Instant) -> Result<(), String> {
    let mut payload = vec![0x5a; size];
    let (mut sent, mut acked) = (0u64, 0u64);
    while acked < count {
        while sent < count {
            payload[..8].copy_from_slice(&(start.elapsed().as_nanos() as u64).to_be_bytes());
            match peer.session.publish_qos1(Instant::now(), topic, &payload, false) {
                Ok(_) => sent += 1,
                Err(ClientError::WindowFull(_)) => break,
                Err(error) => return Err(error.to_string()),
            }
        }
        peer.write()?;
        peer.read()?;
        while let Some(event) = peer.session.poll_event() {
            match event {
                ClientEvent::Published { .. } => acked += 1,
                ClientEvent::Disconnected(reason) => return Err(format!("disconnected: {reason}")),
                _ => {}
            }
        }
    }
    Ok(())
}

/// Receives `expected` QoS 1 messages (acknowledging each as it is taken),
/// measuring each one's latency from the time stamp it carries.
fn raw_subscriber(
    mut peer: RawPeer,
    expected: u64,
    start: Instant,
    delivered: &AtomicU64,
) -> Result<(Vec<u32>, Instant), String> {
    let mut latencies = Vec::with_capacity(expected as usize);
    let mut last = Instant::now();
    while (latencies.len() as u64) < expected {
        peer.read().map_err(|e| format!("a subscriber got {} of {expected}: {e}", latencies.len()))?;
        while let Some(event) = peer.session.poll_event() {
            let ClientEvent::Message { payload, .. } = event else { continue };
            let Some(stamp) = payload.first_chunk::<8>() else { continue };
            let now = start.elapsed().as_nanos() as u64;
            latencies.push(u32::try_from(now.saturating_sub(u64::from_be_bytes(*stamp)) / 1000).unwrap_or(u32::MAX));
            last = Instant::now();
        }
        delivered.store(latencies.len() as u64, Ordering::Relaxed);
        // The PubAcks of what was taken.
        peer.write()?;
    }
    Ok((latencies, last))
}
