//! `tinymq bench`: a load generator for tinymq, and with `--protocol nats`
//! or `--protocol mqtt` for nats-server and mosquitto, so that one run
//! compares the three on the same workloads.
//!
//! Subscribers connect and subscribe first; then publishers send `--count`
//! messages each, as fast as they can or at `--rate`. Each payload starts
//! with the time it was sent (nanoseconds since the run began), so every
//! subscriber measures each delivery's latency. Raw sockets and minimal
//! encoders and parsers per protocol (`protocol.rs`, with `client.rs` owning
//! the socket), no client library: the
//! generator should cost little next to the broker. The workload driver
//! here is the same for every protocol.

mod acknowledged;
mod client;
mod event;
mod in_process;
mod mqtt;
mod mqtt_acknowledged;
mod nats;
mod protocol;
mod workload;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use tinymq_net::ClientTls;

use self::client::Client;
use self::protocol::Protocol;
use self::workload::{Settings, report_latencies};
use crate::args::{self, Failure, Outcome, UsageError};
use crate::broker::Network;
use crate::tls::TlsFlags;

const USAGE: &str = concat!(
    "\
Usage: tinymq bench [OPTIONS]

Publishes to a running broker and reports publish and delivery rates and
latency percentiles.

Options:
  --protocol P         tinymq, nats (nats-server's text protocol) or mqtt
                       (MQTT 3.1.1, e.g. mosquitto or tinymq --mqtt) [default: tinymq]
  --qos 0|1            publish and subscribe at this QoS; 1 acknowledges every delivery:
                       publishers keep --window messages in flight and wait for every
                       PubAck (PUBACK), subscribers hold persistent sessions (mqtt:
                       Clean Session 0) [default: 0]
  --window N           --qos 1: unacknowledged publishes per publisher [default: 1024]
  --network tcp|unix   [default: tcp]
  --address ADDR       broker address [default: 127.0.0.1:1883 for tinymq and
                       mqtt, 127.0.0.1:4222 for nats]
  --sub-address ADDR   the subscribers connect here instead: another broker bridged
                       to --address, or another node of a NATS cluster [default: --address]
  --publishers N       publishing connections [default: 1]
  --subscribers N      subscribing connections, all on the topic [default: 1]
  --count N            messages per publisher [default: 1000000]
  --size BYTES         payload size, at least 8 [default: 64]
  --rate N             messages per second per publisher, 0 for as fast as possible [default: 0]
  --topic TOPIC        [default: bench/a; for nats each / becomes a dot: bench.a]
  --timeout SECS       how long to wait for deliveries after publishing ends [default: 10]
  --pid PID            the broker's process id: report its RSS before and after
  --idle N             instead: open N connections, each subscribed to its own
                       topic (the subscription confirmed), and report the
                       broker's RSS per connection (needs --pid)
  --in-process         instead: start a broker inside this process and drive it
                       through in-process clients (no sockets): --publishers,
                       --subscribers, --count, --size, --topic, --qos apply
  --batch N            with --in-process: publish N messages per call
                       (LocalClient::publish_many) [default: 1, publish]
  --handshakes N       instead (tinymq only): open N connections (Connect, ConnAck,
                       close), from --parallel P threads [default: 2], and report
                       connections/s; with --tls each makes a full handshake
                       (no resumption)
TLS (tinymq only):
",
    tls_usage!()
);

pub fn run(mut args: pico_args::Arguments) -> Outcome {
    if args::help(&mut args, USAGE) {
        return Ok(());
    }
    let protocol = args::opt(&mut args, "--protocol")?.unwrap_or(Protocol::Tinymq);
    let settings = Settings {
        protocol,
        network: args::opt(&mut args, "--network")?.unwrap_or(Network::Tcp),
        address: args::opt(&mut args, "--address")?.unwrap_or_else(|| protocol.default_address().into()),
        sub_address: args::opt(&mut args, "--sub-address")?,
        publishers: args::opt(&mut args, "--publishers")?.unwrap_or(1),
        subscribers: args::opt(&mut args, "--subscribers")?.unwrap_or(1),
        count: args::opt(&mut args, "--count")?.unwrap_or(1_000_000),
        size: args::opt(&mut args, "--size")?.unwrap_or(64),
        rate: args::opt(&mut args, "--rate")?.unwrap_or(0),
        topic: args::opt(&mut args, "--topic")?.unwrap_or_else(|| "bench/a".into()),
        timeout: Duration::from_secs(args::opt(&mut args, "--timeout")?.unwrap_or(10)),
        pid: args::opt(&mut args, "--pid")?,
        idle: args::opt(&mut args, "--idle")?,
        in_process: args.contains("--in-process"),
        batch: args::opt(&mut args, "--batch")?.unwrap_or(1),
        handshakes: args::opt(&mut args, "--handshakes")?,
        parallel: args::opt(&mut args, "--parallel")?.unwrap_or(2),
        tls: None,
        qos: args::opt(&mut args, "--qos")?.unwrap_or(0),
    };
    let window: u16 = args::opt(&mut args, "--window")?.unwrap_or(1024);
    let tls = TlsFlags::parse(&mut args)?;
    args::finish(args)?;
    if tls.enabled() && settings.protocol != Protocol::Tinymq {
        return Err(UsageError("--tls: only with --protocol tinymq".into()).into());
    }
    if settings.handshakes.is_some() && settings.protocol != Protocol::Tinymq {
        return Err(UsageError("--handshakes: only with --protocol tinymq".into()).into());
    }
    if tls.enabled() && settings.network == Network::Unix {
        return Err(UsageError("--tls needs --network tcp".into()).into());
    }
    let settings = Settings { tls: tls.load()?.map(ClientTls::without_resumption), ..settings };
    if settings.qos > 1 || (settings.qos == 1 && settings.protocol == Protocol::Nats) {
        return Err(UsageError("--qos: 0 or 1, and 1 not with --protocol nats".into()).into());
    }
    if settings.qos == 1 && settings.in_process && settings.batch > 1 {
        return Err(UsageError("--batch: only at --qos 0 (an in-process QoS 1 publish is one message)".into()).into());
    }
    if settings.qos == 1 && settings.protocol == Protocol::Tinymq && !settings.in_process {
        return acknowledged::bench(&settings, window.max(1)).map_err(Failure::run);
    }
    if settings.size < 8 {
        return Err(UsageError("--size: at least 8 bytes (the payload carries a time stamp)".into()).into());
    }
    if settings.qos == 1 && settings.protocol == Protocol::Mqtt {
        return mqtt_acknowledged::bench(&settings, window.max(1)).map_err(Failure::run);
    }
    if settings.publishers == 0 {
        return Err(UsageError("--publishers: at least 1".into()).into());
    }
    if settings.batch == 0 {
        return Err(UsageError("--batch: at least 1".into()).into());
    }
    if settings.batch > 1 && !settings.in_process {
        return Err(UsageError("--batch: only with --in-process".into()).into());
    }
    if settings.parallel == 0 {
        return Err(UsageError("--parallel: at least 1".into()).into());
    }
    if settings.in_process {
        return in_process::bench(&settings).map_err(Failure::run);
    }
    if let Some(count) = settings.handshakes {
        return handshakes(&settings, count).map_err(Failure::run);
    }
    if let Some(idle) = settings.idle {
        let pid = settings.pid.ok_or_else(|| UsageError("--idle needs --pid".into()))?;
        return idle_connections(&settings, idle, pid).map_err(Failure::run);
    }
    bench(&settings).map_err(Failure::run)
}

/// Opens `count` connections, each subscribed to its own topic, and
/// reports how much the broker's resident memory grew per connection.
fn idle_connections(settings: &Settings, count: usize, pid: u32) -> Result<(), String> {
    let before = rss_kib(pid).ok_or_else(|| format!("cannot read the RSS of process {pid}"))?;
    let mut conns = Vec::with_capacity(count);
    for i in 0..count {
        let mut client = Client::connect(settings, &format!("bench-idle-{}-{i}", std::process::id()))?;
        let topic = settings.protocol.topic(&format!("{}/idle/{i}", settings.topic));
        client.subscribe(&topic, 1)?;
        // Keep only the socket: the client's buffer is ours, not the broker's.
        conns.push(client.into_conn());
    }
    let after = rss_kib(pid).ok_or_else(|| format!("cannot read the RSS of process {pid}"))?;
    println!("idle subscribed connections ({}): {count}", settings.protocol.name());
    println!("broker RSS: {before} KiB before, {after} KiB with them open");
    println!(
        "RSS per idle subscribed connection: {:.0} bytes",
        (after.saturating_sub(before) * 1024) as f64 / count as f64
    );
    drop(conns);
    Ok(())
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn bench(settings: &Settings) -> Result<(), String> {
    let rss_before = settings.pid.and_then(rss_kib);
    let expected_per_sub = settings.count * settings.publishers as u64;
    let delivered = Arc::new(AtomicU64::new(0));
    let published = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    // Everyone is connected (and subscribed) before the first publish.
    let ready = Arc::new(Barrier::new(settings.publishers + settings.subscribers + 1));

    let topic = settings.protocol.topic(&settings.topic);
    let mut subscribers = Vec::new();
    let sub_settings = match &settings.sub_address {
        Some(address) => Settings { address: address.clone(), ..settings.clone() },
        None => settings.clone(),
    };
    for i in 0..settings.subscribers {
        let mut client = Client::connect(&sub_settings, &format!("bench-sub-{}-{i}", std::process::id()))?;
        client.subscribe(&topic, 1)?;
        let delivered = delivered.clone();
        let ready = ready.clone();
        let deadline_after = settings.timeout;
        let per_sub = expected_per_sub;
        subscribers.push(std::thread::spawn(move || -> Result<(Vec<u32>, Instant), String> {
            ready.wait();
            let mut latencies = Vec::with_capacity(per_sub.min(10_000_000) as usize);
            let mut got = 0u64;
            client.set_read_timeout(deadline_after)?;
            let result = client.read_messages(|payload| {
                if let Some(stamp) = payload.first_chunk::<8>() {
                    let sent = u64::from_be_bytes(*stamp);
                    let now = start.elapsed().as_nanos() as u64;
                    // Microseconds, saturating: 71 minutes is plenty.
                    latencies.push(u32::try_from(now.saturating_sub(sent) / 1000).unwrap_or(u32::MAX));
                    got += 1;
                    if got.is_multiple_of(1024) {
                        delivered.fetch_add(1024, Ordering::Relaxed);
                    }
                }
                got < per_sub
            });
            let last = Instant::now();
            delivered.fetch_add(got % 1024, Ordering::Relaxed);
            if let Err(error) = result {
                return Err(format!("a subscriber got {got} of {per_sub}: {error}"));
            }
            Ok((latencies, last))
        }));
    }

    let mut publishers = Vec::new();
    for i in 0..settings.publishers {
        let mut client = Client::connect(settings, &format!("bench-pub-{}-{i}", std::process::id()))?;
        let topic = topic.clone();
        let (protocol, count, size, rate) = (settings.protocol, settings.count, settings.size, settings.rate);
        let qos = settings.qos;
        let published = published.clone();
        let ready = ready.clone();
        publishers.push(std::thread::spawn(move || -> Result<(), String> {
            // Frames are encoded into one batch, written when it is full
            // (or before a pause at --rate): one write per ~64 KiB.
            const BATCH: usize = 64 * 1024;
            let mut batch = Vec::with_capacity(BATCH + size + topic.len() + 32);
            let mut payload = vec![0x5a; size];
            ready.wait();
            let began = Instant::now();
            for n in 0..count {
                if let Some(offset) = (n * 1_000_000_000).checked_div(rate) {
                    let due = began + Duration::from_nanos(offset);
                    let now = Instant::now();
                    if due > now {
                        client.write(&batch)?;
                        batch.clear();
                        std::thread::sleep(due - now);
                    }
                }
                payload[..8].copy_from_slice(&(start.elapsed().as_nanos() as u64).to_be_bytes());
                if qos == 1 {
                    // Packet ids 1..=65535 in turn: the broker acknowledges
                    // each at once, so none is still in use when it comes back.
                    mqtt::encode_publish_qos1(&topic, &payload, (n % 65_535) as u16 + 1, &mut batch);
                } else {
                    protocol.encode_publish(&topic, &payload, &mut batch);
                }
                if batch.len() >= BATCH {
                    client.write(&batch)?;
                    batch.clear();
                    if qos == 1 {
                        client.discard_available()?;
                    }
                }
                if n % 1024 == 1023 {
                    published.fetch_add(1024, Ordering::Relaxed);
                }
            }
            client.write(&batch)?;
            published.fetch_add(count % 1024, Ordering::Relaxed);
            // The broker has read every publish once it answers a ping: no
            // close may race them (a close with unread input is a reset).
            client.barrier().map_err(|e| format!("a publisher's final ping: {e}"))
        }));
    }

    ready.wait();
    let began = Instant::now();
    let progress = Arc::new(AtomicU64::new(1));
    let reporter = {
        let (delivered, published, progress) = (delivered.clone(), published.clone(), progress.clone());
        let expected = expected_per_sub * settings.subscribers as u64;
        std::thread::spawn(move || {
            let mut ticks = 0;
            while progress.load(Ordering::Relaxed) == 1 {
                std::thread::sleep(Duration::from_millis(100));
                ticks += 1;
                // A progress line every second once a run lasts over 3 s.
                if ticks >= 30 && ticks % 10 == 0 {
                    eprintln!(
                        "  {:>5.1}s  published {}  delivered {} of {}",
                        began.elapsed().as_secs_f64(),
                        published.load(Ordering::Relaxed),
                        delivered.load(Ordering::Relaxed),
                        expected
                    );
                }
            }
        })
    };
    let Joined { errors, publish_secs, mut latencies, last } = join_runs(publishers, subscribers, began);
    progress.store(0, Ordering::Relaxed);
    let _ = reporter.join();
    let rss_after = settings.pid.and_then(rss_kib);

    let total_published = settings.count * settings.publishers as u64;
    let deliver_secs = last.duration_since(began).as_secs_f64();
    println!(
        "workload: {}, {} publisher(s) -> {} subscriber(s), {} messages of {} bytes{}",
        settings.protocol.name(),
        settings.publishers,
        settings.subscribers,
        total_published,
        settings.size,
        if settings.rate > 0 { format!(" at {} msg/s each", settings.rate) } else { String::new() }
    );
    println!(
        "published: {:.0} msg/s ({total_published} in {publish_secs:.3} s)",
        total_published as f64 / publish_secs
    );
    if settings.subscribers > 0 {
        println!(
            "delivered: {:.0} msg/s ({} in {deliver_secs:.3} s)",
            latencies.len() as f64 / deliver_secs,
            latencies.len()
        );
        report_latencies(&mut latencies);
    }
    if let (Some(before), Some(after)) = (rss_before, rss_after) {
        println!("broker RSS: {before} KiB before, {after} KiB after");
    }
    if !errors.is_empty() {
        return Err(errors.join("; "));
    }
    Ok(())
}

/// Opens `count` connections, `--parallel` at a time: TCP connect, the TLS
/// handshake with `--tls`, Connect and ConnAck, close. Reports connections
/// per second: with TLS, the full handshakes the broker sustains (while
/// this process makes the client's half of each).
fn handshakes(settings: &Settings, count: u64) -> Result<(), String> {
    let next = Arc::new(AtomicU64::new(0));
    let began = Instant::now();
    let workers: Vec<_> = (0..settings.parallel)
        .map(|w| {
            let next = next.clone();
            let settings = settings.clone();
            std::thread::spawn(move || -> Result<(), String> {
                while next.fetch_add(1, Ordering::Relaxed) < count {
                    Client::connect(&settings, &format!("bench-hs-{}-{w}", std::process::id()))?.close();
                }
                Ok(())
            })
        })
        .collect();
    for worker in workers {
        worker.join().map_err(|_| "a worker panicked".to_owned())??;
    }
    let secs = began.elapsed().as_secs_f64();
    let kind = if settings.tls.is_some() { "TLS connections, full handshakes" } else { "plain TCP connections" };
    println!("{count} {kind} (Connect, ConnAck, close), {} at a time", settings.parallel);
    println!("connections: {:.0}/s ({count} in {secs:.3} s)", count as f64 / secs);
    Ok(())
}

/// What a run's threads ended with.
struct Joined<L> {
    /// Every thread's error.
    errors: Vec<String>,
    /// Seconds from `began` until the last publisher finished.
    publish_secs: f64,
    /// Every subscriber's delivery latencies.
    latencies: Vec<L>,
    /// When the last subscriber saw its last delivery.
    last: Instant,
}

/// Ends an acknowledged run (`--qos 1`): lets its threads go at `ready`,
/// joins them, and prints its workload line (`face` names the protocol,
/// `subscriber_kind` what its subscribers are), the publishers'
/// acknowledged rate, then the deliveries' rate and latencies; the
/// threads' errors, if any, after.
fn finish_acknowledged<P>(
    ready: &Barrier,
    publishers: Vec<std::thread::JoinHandle<Result<P, String>>>,
    subscribers: Vec<SubscriberThread<u32>>,
    settings: &Settings,
    window: u16,
    face: &str,
    subscriber_kind: &str,
) -> Result<(), String> {
    ready.wait();
    let began = Instant::now();
    let expected = settings.count * settings.publishers as u64;
    let mut joined = join_runs(publishers, subscribers, began);
    println!(
        "workload: {face} QoS 1, {} publisher(s) (window {window}) -> {} {subscriber_kind}, {expected} messages of {} bytes",
        settings.publishers, settings.subscribers, settings.size
    );
    println!(
        "acknowledged: {:.0} msg/s ({expected} in {:.3} s)",
        expected as f64 / joined.publish_secs,
        joined.publish_secs
    );
    if settings.subscribers > 0 {
        let secs = joined.last.duration_since(began).as_secs_f64();
        println!(
            "delivered: {:.0} msg/s ({} in {secs:.3} s)",
            joined.latencies.len() as f64 / secs,
            joined.latencies.len()
        );
        workload::report_latencies(&mut joined.latencies);
    }
    if !joined.errors.is_empty() {
        return Err(joined.errors.join("; "));
    }
    Ok(())
}

/// A subscriber thread: its latencies and when its last delivery came.
type SubscriberThread<L> = std::thread::JoinHandle<Result<(Vec<L>, Instant), String>>;

/// Waits for the publishers, then the subscribers, of a run that began at
/// `began` (every workload joins its threads this way).
fn join_runs<P, L>(
    publishers: Vec<std::thread::JoinHandle<Result<P, String>>>,
    subscribers: Vec<SubscriberThread<L>>,
    began: Instant,
) -> Joined<L> {
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
    Joined { errors, publish_secs, latencies, last }
}
