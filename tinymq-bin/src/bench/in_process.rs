//! `tinymq bench --in-process`: a broker started inside this process and
//! driven through its in-process clients, no socket on the way. It measures
//! what an embedding service gets: publish on one thread, receive on
//! another. With `--qos 1`, each publish is `publish_qos1` and each
//! subscription `subscribe_qos1`: the messages go through the
//! subscribers' sessions (in memory: nothing is stored) and are
//! acknowledged as `recv_many` takes them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use tinymq_net::{Broker, ReceivedBatch};

use super::workload::{Settings, report_latencies};

pub(super) fn bench(settings: &Settings) -> Result<(), String> {
    let broker =
        Broker::builder().in_memory().threads(1).sys_interval(Duration::ZERO).start().map_err(|e| e.to_string())?;
    let result = run(&broker, settings);
    broker.shutdown();
    result
}

fn run(broker: &Broker, settings: &Settings) -> Result<(), String> {
    let start = Instant::now();
    let per_sub = settings.count * settings.publishers as u64;
    let ready = Arc::new(Barrier::new(settings.publishers + settings.subscribers));
    let publishing = Arc::new(AtomicBool::new(true));
    let mut subscribers = Vec::new();
    for i in 0..settings.subscribers {
        let client = broker.client(&format!("bench-sub-{i}")).map_err(|e| e.to_string())?;
        let subscribed = match settings.qos {
            1 => client.subscribe_qos1(&settings.topic),
            _ => client.subscribe(&settings.topic),
        };
        subscribed.map_err(|e| e.to_string())?;
        let (ready, publishing, timeout) = (ready.clone(), publishing.clone(), settings.timeout);
        subscribers.push(std::thread::spawn(move || -> Result<(Vec<u32>, u64, Instant), String> {
            let mut latencies = Vec::with_capacity(per_sub.min(10_000_000) as usize);
            let mut batch = ReceivedBatch::new();
            let mut got = 0u64;
            ready.wait();
            let mut quiet_since = None;
            while got < per_sub {
                let n = client.recv_many(&mut batch, Duration::from_millis(50)).map_err(|e| e.to_string())?;
                if n == 0 {
                    // Messages dropped from a full queue never come: stop
                    // once publishing ended and nothing came for `timeout`.
                    if !publishing.load(Ordering::Relaxed) {
                        let since = *quiet_since.get_or_insert_with(Instant::now);
                        if since.elapsed() >= timeout {
                            break;
                        }
                    }
                    continue;
                }
                quiet_since = None;
                let now = start.elapsed().as_nanos() as u64;
                for message in &batch {
                    if let Some(stamp) = message.payload().first_chunk::<8>() {
                        let sent = u64::from_be_bytes(*stamp);
                        latencies.push(u32::try_from(now.saturating_sub(sent) / 1000).unwrap_or(u32::MAX));
                        got += 1;
                    }
                }
            }
            Ok((latencies, got, Instant::now()))
        }));
    }
    let mut publishers = Vec::new();
    for i in 0..settings.publishers {
        let client = broker.client(&format!("bench-pub-{i}")).map_err(|e| e.to_string())?;
        let (ready, topic, count, size) = (ready.clone(), settings.topic.clone(), settings.count, settings.size);
        let (batch, qos1) = (settings.batch as u64, settings.qos == 1);
        publishers.push(std::thread::spawn(move || -> Result<Instant, String> {
            let mut payloads = vec![vec![0x5a; size]; batch.min(count) as usize];
            ready.wait();
            let mut sent = 0;
            while sent < count {
                let n = batch.min(count - sent) as usize;
                for payload in &mut payloads[..n] {
                    payload[..8].copy_from_slice(&(start.elapsed().as_nanos() as u64).to_be_bytes());
                }
                if qos1 {
                    client.publish_qos1(&topic, &payloads[0]).map_err(|e| e.to_string())?;
                } else if n == 1 {
                    client.publish(&topic, &payloads[0]).map_err(|e| e.to_string())?;
                } else {
                    client.publish_many(&topic, &payloads[..n]).map_err(|e| e.to_string())?;
                }
                sent += n as u64;
            }
            Ok(Instant::now())
        }));
    }
    let mut published_at = start;
    for publisher in publishers {
        published_at = published_at.max(publisher.join().map_err(|_| "a publisher panicked")??);
    }
    publishing.store(false, Ordering::Relaxed);
    let mut latencies = Vec::new();
    let mut delivered = 0;
    let mut last = start;
    for subscriber in subscribers {
        let (mut own, got, at) = subscriber.join().map_err(|_| "a subscriber panicked")??;
        latencies.append(&mut own);
        delivered += got;
        last = last.max(at);
    }
    let published = settings.count * settings.publishers as u64;
    let expected = per_sub * settings.subscribers as u64;
    let stats = broker.stats();
    let drops = stats.local_queue_drops + stats.sessions.dropped;
    println!(
        "workload: in-process, {} publisher(s) -> {} subscriber(s), {} messages of {} bytes, {}",
        settings.publishers,
        settings.subscribers,
        settings.count,
        settings.size,
        match (settings.qos, settings.batch) {
            (1, _) => "QoS 1, one per publish_qos1".into(),
            (_, 1) => "one per publish".to_owned(),
            (_, batch) => format!("{batch} per publish_many"),
        }
    );
    let secs = |at: Instant| at.duration_since(start).as_secs_f64();
    println!(
        "published: {:.0} msg/s ({published} in {:.3} s)",
        published as f64 / secs(published_at),
        secs(published_at)
    );
    println!("delivered: {:.0} msg/s ({delivered} in {:.3} s)", delivered as f64 / secs(last), secs(last));
    if delivered < expected {
        println!(
            "lost: {} of {expected} (dropped from full in-process or session queues: {drops})",
            expected - delivered
        );
    }
    report_latencies(&mut latencies);
    if delivered < expected { Err(format!("{} messages were not delivered", expected - delivered)) } else { Ok(()) }
}
