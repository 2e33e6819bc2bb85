//! `tinymq bench`: a load generator for the binary protocol.
//!
//! Subscribers connect and subscribe first; then publishers send `--count`
//! messages each, as fast as they can or at `--rate`. Each payload starts
//! with the time it was sent (nanoseconds since the run began), so every
//! subscriber measures each delivery's latency. Raw sockets and the codec,
//! no client library: the generator should cost little next to the broker.

use std::io::{BufWriter, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use rustls::{ClientConnection, StreamOwned};
use tinymq_core::codec::parse_reason;
use tinymq_core::{Decoded, Decoder, Frame, FrameLimits, FrameType};
use tinymq_net::ClientTls;

use crate::args::{self, Failure, Outcome, UsageError};
use crate::broker::Network;
use crate::tls::TlsFlags;

const USAGE: &str = concat!(
    "\
Usage: tinymq bench [OPTIONS]

Publishes to a running broker and reports publish and delivery rates and
latency percentiles.

Options:
  --network tcp|unix   [default: tcp]
  --address ADDR       broker address [default: 127.0.0.1:1883]
  --publishers N       publishing connections [default: 1]
  --subscribers N      subscribing connections, all on the topic [default: 1]
  --count N            messages per publisher [default: 1000000]
  --size BYTES         payload size, at least 8 [default: 64]
  --rate N             messages per second per publisher, 0 for as fast as possible [default: 0]
  --topic TOPIC        [default: bench/a]
  --timeout SECS       how long to wait for deliveries after publishing ends [default: 10]
  --pid PID            the broker's process id: report its RSS before and after
  --idle N             instead: open N connections, each subscribed to its own
                       topic, and report the broker's RSS per connection (needs --pid)
  --handshakes N       instead: open N connections (Connect, ConnAck, close), from
                       --parallel P threads [default: 2], and report connections/s;
                       with --tls each makes a full handshake (no resumption)
",
    tls_usage!()
);

#[derive(Clone)]
struct Settings {
    network: Network,
    address: String,
    publishers: usize,
    subscribers: usize,
    count: u64,
    size: usize,
    rate: u64,
    topic: String,
    timeout: Duration,
    pid: Option<u32>,
    idle: Option<usize>,
    handshakes: Option<u64>,
    parallel: usize,
    tls: Option<ClientTls>,
}

pub fn run(mut args: pico_args::Arguments) -> Outcome {
    if args::help(&mut args, USAGE) {
        return Ok(());
    }
    let settings = Settings {
        network: args::opt(&mut args, "--network")?.unwrap_or(Network::Tcp),
        address: args::opt(&mut args, "--address")?.unwrap_or_else(|| "127.0.0.1:1883".into()),
        publishers: args::opt(&mut args, "--publishers")?.unwrap_or(1),
        subscribers: args::opt(&mut args, "--subscribers")?.unwrap_or(1),
        count: args::opt(&mut args, "--count")?.unwrap_or(1_000_000),
        size: args::opt(&mut args, "--size")?.unwrap_or(64),
        rate: args::opt(&mut args, "--rate")?.unwrap_or(0),
        topic: args::opt(&mut args, "--topic")?.unwrap_or_else(|| "bench/a".into()),
        timeout: Duration::from_secs(args::opt(&mut args, "--timeout")?.unwrap_or(10)),
        pid: args::opt(&mut args, "--pid")?,
        idle: args::opt(&mut args, "--idle")?,
        handshakes: args::opt(&mut args, "--handshakes")?,
        parallel: args::opt(&mut args, "--parallel")?.unwrap_or(2),
        tls: None,
    };
    let tls = TlsFlags::parse(&mut args)?;
    args::finish(args)?;
    if tls.enabled() && settings.network == Network::Unix {
        return Err(UsageError("--tls needs --network tcp".into()).into());
    }
    let settings = Settings { tls: tls.load()?.map(ClientTls::without_resumption), ..settings };
    if settings.size < 8 {
        return Err(UsageError("--size: at least 8 bytes (the payload carries a time stamp)".into()).into());
    }
    if settings.publishers == 0 {
        return Err(UsageError("--publishers: at least 1".into()).into());
    }
    if settings.parallel == 0 {
        return Err(UsageError("--parallel: at least 1".into()).into());
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
        let mut reader = connect(settings, &format!("bench-idle-{}-{i}", std::process::id()))?;
        let topic = format!("{}/idle/{i}", settings.topic);
        reader.conn.write_all(&Frame::with_topic(FrameType::Subscribe, &topic).to_vec()).map_err(|e| e.to_string())?;
        reader.expect(FrameType::SubAck)?;
        // Keep only the socket: the reader's buffer is ours, not the broker's.
        conns.push(reader.conn);
    }
    let after = rss_kib(pid).ok_or_else(|| format!("cannot read the RSS of process {pid}"))?;
    println!("idle subscribed connections: {count}");
    println!("broker RSS: {before} KiB before, {after} KiB with them open");
    println!(
        "RSS per idle subscribed connection: {:.0} bytes",
        (after.saturating_sub(before) * 1024) as f64 / count as f64
    );
    drop(conns);
    Ok(())
}

enum Conn {
    Tcp(TcpStream),
    Unix(UnixStream),
    /// Blocking TLS: the handshake happens in the first reads and writes.
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Conn {
    fn open(settings: &Settings) -> Result<Conn, String> {
        let io = |e: std::io::Error| e.to_string();
        Ok(match (settings.network, &settings.tls) {
            (Network::Tcp, tls) => {
                let stream = TcpStream::connect(&settings.address).map_err(io)?;
                stream.set_nodelay(true).map_err(io)?;
                match tls {
                    None => Conn::Tcp(stream),
                    Some(tls) => {
                        let name = tinymq_net::tls::server_name(&settings.address)?;
                        let tls = ClientConnection::new(tls.config(), name).map_err(|e| e.to_string())?;
                        Conn::Tls(Box::new(StreamOwned::new(tls, stream)))
                    }
                }
            }
            (Network::Unix, _) => Conn::Unix(UnixStream::connect(&settings.address).map_err(io)?),
        })
    }

    fn set_read_timeout(&self, timeout: Duration) -> std::io::Result<()> {
        match self {
            Conn::Tcp(s) => s.set_read_timeout(Some(timeout)),
            Conn::Unix(s) => s.set_read_timeout(Some(timeout)),
            Conn::Tls(s) => s.sock.set_read_timeout(Some(timeout)),
        }
    }

    /// Ends the connection as a well-behaved client does (TLS: close_notify).
    fn close(mut self) {
        if let Conn::Tls(s) = &mut self {
            s.conn.send_close_notify();
            let _ = s.conn.complete_io(&mut s.sock);
        }
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.read(buf),
            Conn::Unix(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.write(buf),
            Conn::Unix(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Conn::Tls(s) => s.flush(),
            _ => Ok(()),
        }
    }
}

/// Reads frames from a connection into a growing buffer.
struct FrameReader {
    conn: Conn,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    decoder: Decoder,
}

impl FrameReader {
    fn new(conn: Conn) -> Self {
        let limits = FrameLimits { max_payload_len: 64 << 20, ..FrameLimits::default() };
        FrameReader { conn, buf: vec![0; 256 * 1024], start: 0, end: 0, decoder: Decoder::new(limits) }
    }

    /// Calls `on_frame` for each frame until it returns false. Errors on EOF.
    fn read_frames(&mut self, mut on_frame: impl FnMut(Frame<'_>) -> bool) -> Result<(), String> {
        loop {
            loop {
                match self.decoder.decode(&self.buf[self.start..self.end]) {
                    Ok(Decoded::Frame { frame, consumed }) => {
                        self.start += consumed;
                        if !on_frame(frame) {
                            return Ok(());
                        }
                    }
                    Ok(Decoded::Incomplete { needed }) => {
                        if needed > self.buf.len() {
                            self.buf.resize(needed, 0);
                        }
                        break;
                    }
                    Err(error) => return Err(format!("the broker sent a bad frame: {error}")),
                }
            }
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            let n = self.conn.read(&mut self.buf[self.end..]).map_err(|e| format!("read failed: {e}"))?;
            if n == 0 {
                return Err("the broker closed the connection".into());
            }
            self.end += n;
        }
    }

    /// Waits for a frame of `kind`, failing on a Disconnect.
    fn expect(&mut self, kind: FrameType) -> Result<(), String> {
        let mut result = Ok(());
        self.read_frames(|frame| {
            if frame.kind == FrameType::Disconnect {
                let reason = parse_reason(frame.payload).map_or("no reason".to_owned(), |(c, t)| format!("{c} {t}"));
                result = Err(format!("the broker disconnected: {reason}"));
                return false;
            }
            frame.kind != kind
        })?;
        result
    }
}

fn connect(settings: &Settings, client_id: &str) -> Result<FrameReader, String> {
    let mut conn = Conn::open(settings).map_err(|e| format!("cannot connect to {}: {e}", settings.address))?;
    // Over TLS this write and the read below make the handshake.
    conn.write_all(&Frame::connect(client_id, b"").to_vec()).map_err(|e| e.to_string())?;
    let mut reader = FrameReader::new(conn);
    reader.expect(FrameType::ConnAck)?;
    Ok(reader)
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

    let mut subscribers = Vec::new();
    for i in 0..settings.subscribers {
        let mut reader = connect(settings, &format!("bench-sub-{}-{i}", std::process::id()))?;
        reader
            .conn
            .write_all(&Frame::with_topic(FrameType::Subscribe, &settings.topic).to_vec())
            .map_err(|e| e.to_string())?;
        reader.expect(FrameType::SubAck)?;
        let delivered = delivered.clone();
        let ready = ready.clone();
        let deadline_after = settings.timeout;
        let per_sub = expected_per_sub;
        subscribers.push(std::thread::spawn(move || -> Result<(Vec<u32>, Instant), String> {
            ready.wait();
            let mut latencies = Vec::with_capacity(per_sub.min(10_000_000) as usize);
            let mut got = 0u64;
            let mut last = Instant::now();
            reader.conn.set_read_timeout(deadline_after).map_err(|e| e.to_string())?;
            let mut failure = None;
            let result = reader.read_frames(|frame| {
                match frame.kind {
                    FrameType::Publish if frame.payload.len() >= 8 => {
                        let sent = u64::from_be_bytes(frame.payload[..8].try_into().expect("8 bytes"));
                        let now = start.elapsed().as_nanos() as u64;
                        // Microseconds, saturating: 71 minutes is plenty.
                        latencies.push(u32::try_from(now.saturating_sub(sent) / 1000).unwrap_or(u32::MAX));
                        got += 1;
                        if got.is_multiple_of(1024) {
                            delivered.fetch_add(1024, Ordering::Relaxed);
                        }
                    }
                    FrameType::Disconnect => {
                        let reason = parse_reason(frame.payload).map_or(String::new(), |(c, t)| format!("{c} {t}"));
                        failure = Some(format!("subscriber disconnected by the broker: {reason}"));
                        return false;
                    }
                    _ => {}
                }
                got < per_sub
            });
            last = last.max(Instant::now());
            delivered.fetch_add(got % 1024, Ordering::Relaxed);
            if let Some(failure) = failure {
                return Err(failure);
            }
            if let Err(error) = result {
                return Err(format!("subscriber got {got} of {per_sub}: {error}"));
            }
            Ok((latencies, last))
        }));
    }

    let mut publishers = Vec::new();
    for i in 0..settings.publishers {
        // Publishers only write: the reader's socket (and TLS session) is theirs.
        let conn = connect(settings, &format!("bench-pub-{}-{i}", std::process::id()))?.conn;
        let topic = settings.topic.clone();
        let (count, size, rate) = (settings.count, settings.size, settings.rate);
        let published = published.clone();
        let ready = ready.clone();
        publishers.push(std::thread::spawn(move || -> Result<(), String> {
            let mut out = BufWriter::with_capacity(64 * 1024, conn);
            let mut payload = vec![0x5a; size];
            let mut frame = Vec::with_capacity(size + topic.len() + 16);
            ready.wait();
            let began = Instant::now();
            for n in 0..count {
                if let Some(offset) = (n * 1_000_000_000).checked_div(rate) {
                    let due = began + Duration::from_nanos(offset);
                    let now = Instant::now();
                    if due > now {
                        out.flush().map_err(|e| e.to_string())?;
                        std::thread::sleep(due - now);
                    }
                }
                payload[..8].copy_from_slice(&(start.elapsed().as_nanos() as u64).to_be_bytes());
                frame.clear();
                Frame::publish(&topic, &payload, "", false).encode(&mut frame);
                out.write_all(&frame).map_err(|e| format!("publish failed: {e}"))?;
                if n % 1024 == 1023 {
                    published.fetch_add(1024, Ordering::Relaxed);
                }
            }
            out.flush().map_err(|e| e.to_string())?;
            published.fetch_add(count % 1024, Ordering::Relaxed);
            Ok(())
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
    progress.store(0, Ordering::Relaxed);
    let _ = reporter.join();
    let rss_after = settings.pid.and_then(rss_kib);

    let total_published = settings.count * settings.publishers as u64;
    let deliver_secs = last.duration_since(began).as_secs_f64();
    println!(
        "workload: {} publisher(s) -> {} subscriber(s), {} messages of {} bytes{}",
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
        if !latencies.is_empty() {
            latencies.sort_unstable();
            let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
            println!(
                "latency: p50 {} us, p99 {} us, p99.9 {} us, max {} us",
                pct(0.50),
                pct(0.99),
                pct(0.999),
                latencies[latencies.len() - 1]
            );
        }
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
                    connect(&settings, &format!("bench-hs-{}-{w}", std::process::id()))?.conn.close();
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
