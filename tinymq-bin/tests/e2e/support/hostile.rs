//! Helpers of the hostile-peer tests (`hostile*.rs`): the witness, a pair of
//! ordinary binary-protocol clients that keep exchanging messages while a
//! test attacks the broker; a deterministic PRNG for junk; and the broker
//! process's figures from /proc (descriptors, RSS, CPU time).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{Endpoint, Next, RawClient};
use tinymq_core::FrameType;

/// The longest a witness message may take, and the longest the witness
/// subscriber may go without one.
pub const WITNESS_DEADLINE: Duration = Duration::from_secs(2);
/// How often the witness publishes.
const WITNESS_PERIOD: Duration = Duration::from_millis(5);
/// How often the witness subscriber pings, so a short `--keep-alive` does
/// not cut it.
const WITNESS_PING: Duration = Duration::from_millis(250);
const WITNESS_TOPIC: &str = "witness/seq";
/// Messages the witness exchanges before it may finish.
const MIN_MESSAGES: u64 = 50;

/// A publisher and a subscriber on the binary protocol, each on its own
/// thread. The publisher sends a numbered message every few milliseconds;
/// the subscriber checks each arrives in order, with no gap, within
/// [`WITNESS_DEADLINE`] of being sent, and that it never waits longer than
/// that for the next one. [`Witness::finish`] stops both and panics with
/// what went wrong, if anything.
pub struct Witness {
    stop: Arc<AtomicBool>,
    failure: Arc<Mutex<Option<String>>>,
    received: Arc<AtomicU64>,
    max_latency_us: Arc<AtomicU64>,
    publisher: Option<JoinHandle<u64>>,
    subscriber: Option<JoinHandle<()>>,
}

/// What the witness saw.
#[derive(Debug)]
pub struct WitnessReport {
    /// Messages sent and received (all of them, in order).
    #[allow(dead_code, reason = "shown in the test's log through Debug")]
    pub messages: u64,
    /// The slowest message, from send to receipt.
    pub max_latency: Duration,
}

impl Witness {
    /// Connects the pair to `endpoint` (the subscriber subscribed first)
    /// and starts the exchange.
    pub fn start(endpoint: &Endpoint) -> Self {
        let mut subscriber = RawClient::connect(endpoint, "witness-sub");
        subscriber.subscribe(WITNESS_TOPIC);
        let mut publisher = RawClient::connect(endpoint, "witness-pub");
        let stop = Arc::new(AtomicBool::new(false));
        let failure = Arc::new(Mutex::new(None::<String>));
        let received = Arc::new(AtomicU64::new(0));
        let max_latency_us = Arc::new(AtomicU64::new(0));
        let last_sent = Arc::new(AtomicU64::new(0));
        let base = Instant::now();

        let publisher = {
            let (stop, failure, last_sent) = (stop.clone(), failure.clone(), last_sent.clone());
            std::thread::spawn(move || {
                let mut seq = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    seq += 1;
                    let sent_us = base.elapsed().as_micros() as u64;
                    let payload = format!("{seq} {sent_us}");
                    let frame = tinymq_core::Frame::publish(WITNESS_TOPIC, payload.as_bytes(), "", false).to_vec();
                    if let Err(error) = publisher.try_send_bytes(&frame) {
                        failure.lock().unwrap().get_or_insert(format!("witness publisher: write {seq}: {error}"));
                        return seq - 1;
                    }
                    last_sent.store(seq, Ordering::Relaxed);
                    std::thread::sleep(WITNESS_PERIOD);
                }
                seq
            })
        };

        let subscriber = {
            let (stop, failure, received, max_latency_us, last_sent) =
                (stop.clone(), failure.clone(), received.clone(), max_latency_us.clone(), last_sent.clone());
            std::thread::spawn(move || {
                let fail = |what: String| {
                    failure.lock().unwrap().get_or_insert(what);
                };
                let mut expected = 1u64;
                let mut pinged = Instant::now();
                loop {
                    // Stopped, and everything sent has arrived.
                    if stop.load(Ordering::Relaxed) && expected > last_sent.load(Ordering::Relaxed) {
                        return;
                    }
                    if pinged.elapsed() >= WITNESS_PING {
                        pinged = Instant::now();
                        let ping = tinymq_core::Frame::empty(FrameType::Ping).to_vec();
                        if let Err(error) = subscriber.try_send_bytes(&ping) {
                            return fail(format!("witness subscriber: ping: {error}"));
                        }
                    }
                    // Short reads, so pings go out on time; the deadline is
                    // checked against the send time in each message.
                    let waited = Instant::now();
                    let frame = loop {
                        match subscriber.next_within(WITNESS_PING / 2) {
                            Next::Frame(frame) => break frame,
                            Next::Timeout if waited.elapsed() > WITNESS_DEADLINE => {
                                return fail(format!(
                                    "witness subscriber: nothing for {:?} while waiting for message {expected}",
                                    waited.elapsed()
                                ));
                            }
                            Next::Timeout if pinged.elapsed() >= WITNESS_PING => {
                                pinged = Instant::now();
                                let ping = tinymq_core::Frame::empty(FrameType::Ping).to_vec();
                                if let Err(error) = subscriber.try_send_bytes(&ping) {
                                    return fail(format!("witness subscriber: ping: {error}"));
                                }
                            }
                            Next::Timeout => {}
                            Next::Closed => {
                                return fail(format!("witness subscriber: closed before message {expected}"));
                            }
                        }
                    };
                    match frame.kind {
                        FrameType::Pong => continue,
                        FrameType::Publish => {}
                        _ => return fail(format!("witness subscriber: unexpected {frame:?} {:?}", frame.reason())),
                    }
                    let text = String::from_utf8_lossy(&frame.payload).into_owned();
                    let Some((seq, sent_us)) =
                        text.split_once(' ').and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
                    else {
                        return fail(format!("witness subscriber: a foreign payload {text:?}"));
                    };
                    let seq: u64 = seq;
                    let sent_us: u64 = sent_us;
                    if seq != expected {
                        return fail(format!("witness subscriber: message {seq} arrived when {expected} was due"));
                    }
                    let latency = (base.elapsed().as_micros() as u64).saturating_sub(sent_us);
                    max_latency_us.fetch_max(latency, Ordering::Relaxed);
                    if latency > WITNESS_DEADLINE.as_micros() as u64 {
                        return fail(format!("witness subscriber: message {seq} took {latency} µs"));
                    }
                    received.store(seq, Ordering::Relaxed);
                    expected += 1;
                }
            })
        };
        Witness { stop, failure, received, max_latency_us, publisher: Some(publisher), subscriber: Some(subscriber) }
    }

    /// Panics if the witness has failed so far; the messages received.
    pub fn check(&self) -> u64 {
        if let Some(failure) = self.failure.lock().unwrap().as_ref() {
            panic!("{failure}");
        }
        self.received.load(Ordering::Relaxed)
    }

    /// Stops the exchange, waits for the last message, and panics if a
    /// message was lost, late or out of order (or none was exchanged).
    pub fn finish(mut self) -> WitnessReport {
        // At least a few exchanged, however short the attack was.
        let deadline = Instant::now() + WITNESS_DEADLINE;
        while self.check() < MIN_MESSAGES && Instant::now() < deadline {
            std::thread::sleep(WITNESS_PERIOD);
        }
        self.stop.store(true, Ordering::Relaxed);
        let sent = self.publisher.take().unwrap().join().expect("the witness publisher panicked");
        self.subscriber.take().unwrap().join().expect("the witness subscriber panicked");
        self.check();
        let received = self.received.load(Ordering::Relaxed);
        assert_eq!(received, sent, "the witness received every message it sent");
        assert!(received > 0, "the witness exchanged messages");
        let report = WitnessReport {
            messages: received,
            max_latency: Duration::from_micros(self.max_latency_us.load(Ordering::Relaxed)),
        };
        eprintln!("witness: {report:?}");
        report
    }
}

impl Drop for Witness {
    fn drop(&mut self) {
        // A test that panicked before finish(): stop the threads.
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A xorshift64* generator: deterministic junk without a crate.
pub struct XorShift(u64);

impl XorShift {
    /// Seeded; a zero seed is replaced (xorshift would stay at zero).
    pub fn new(seed: u64) -> Self {
        XorShift(seed.max(1))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// `len` random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
}

/// The number of descriptors process `pid` has open.
pub fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).expect("read /proc/PID/fd").count()
}

/// A line of /proc/PID/status, in kB (`VmRSS`, `VmHWM`).
pub fn status_kb(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/PID/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().strip_suffix("kB")?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{key} in /proc/{pid}/status"))
}

/// The CPU time process `pid` has used, user and system (all threads).
pub fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/PID/stat");
    // After the command name in parentheses: state is field 3, utime 14,
    // stime 15 (1-based), so 11 and 12 after the state.
    let rest = &stat[stat.rfind(')').expect("(comm)") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf reads a constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_millis(ticks * 1000 / hz)
}

/// Polls `check` until it returns `Ok`, at most `timeout`; panics with
/// `what` and the last value seen otherwise.
pub fn poll_until<T, E: std::fmt::Debug>(timeout: Duration, what: &str, mut check: impl FnMut() -> Result<T, E>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match check() {
            Ok(value) => return value,
            Err(last) if Instant::now() >= deadline => panic!("{what}: not within {timeout:?}; last: {last:?}"),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Sets SO_LINGER to 0 on `socket`, so closing it sends RST.
pub fn linger_zero(socket: &impl std::os::fd::AsRawFd) {
    let linger = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: setsockopt reads one `linger` we own, of the size given.
    let result = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(result, 0, "SO_LINGER: {}", std::io::Error::last_os_error());
}
