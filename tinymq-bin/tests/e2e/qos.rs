//! Acknowledged delivery with the real binary over real sockets: QoS 1
//! messages published while a persistent subscriber is away, through two
//! SIGKILLs of the broker, all delivered (at least once, in order per
//! publisher) when it comes back; and a will published after a kill -9 of
//! its client, not after a clean exit.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tinymq_net::{Address, Client, ClientOptions};

use crate::support::{BrokerProcess, Endpoint, ScratchDir, WAIT, tinymq, wait_child};

/// QoS 1 messages the kill -9 test publishes.
const MESSAGES: u64 = 100_000;

/// How long the whole run may take: publishing 100,000 acknowledged
/// messages through two restarts, then receiving them, on a debug build.
const RUN_DEADLINE: Duration = Duration::from_secs(300);

/// A broker on `address` keeping its store in `data`, committing before
/// it acknowledges. A restart on the same address can meet the port
/// briefly held: it is tried again until the deadline.
fn start(address: SocketAddr, data: &ScratchDir) -> BrokerProcess {
    let dir = data.path().to_str().expect("a UTF-8 path");
    BrokerProcess::restart_at(address, &["--data", dir, "--durability", "immediate"])
}

fn options(address: SocketAddr, client_id: &str) -> ClientOptions {
    ClientOptions::new(Address::tcp(address.to_string()))
        .client_id(client_id)
        .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(200))
        .request_timeout(Duration::from_secs(60))
}

/// Waits until `counter` reaches `at_least`, failing at `deadline`.
fn wait_for(counter: &AtomicU64, at_least: u64, deadline: Instant) {
    while counter.load(Ordering::Relaxed) < at_least {
        assert!(
            Instant::now() < deadline,
            "only {} acknowledged, waiting for {at_least}",
            counter.load(Ordering::Relaxed)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn every_acknowledged_message_survives_two_kill_9s() {
    let data = ScratchDir::new();
    let address = crate::support::free_address();
    let mut broker = start(address, &data);
    let deadline = Instant::now() + RUN_DEADLINE;

    // The subscriber leaves a persistent QoS 1 session behind.
    let mut keeper = options(address, "keeper").persistent_session(true).connect().expect("keeper connects");
    keeper.subscribe_qos1("load/#").expect("QoS 1 subscription");
    keeper.disconnect().expect("clean disconnect");

    let acknowledged = Arc::new(AtomicU64::new(0));
    let counter = acknowledged.clone();
    let publisher = std::thread::spawn(move || -> Result<(usize, u64), tinymq_net::ClientError> {
        let mut client = options(address, "loader").max_inflight(256).connect()?;
        for seq in 0..MESSAGES {
            client.publish_qos1("load/seq", &seq.to_be_bytes(), false)?;
            counter.store(client.acknowledged(), Ordering::Relaxed);
        }
        let left = client.wait_acknowledged(Duration::from_secs(120))?;
        counter.store(client.acknowledged(), Ordering::Relaxed);
        Ok((left, client.acknowledged()))
    });

    for at in [MESSAGES * 3 / 10, MESSAGES * 6 / 10] {
        wait_for(&acknowledged, at, deadline);
        broker.kill();
        eprintln!("killed the broker with SIGKILL at {} acknowledged", acknowledged.load(Ordering::Relaxed));
        broker = start(address, &data);
    }
    let (left, acked) = publisher.join().expect("the publisher thread").expect("the publisher");
    assert_eq!(left, 0, "every message acknowledged in the end");
    assert!(acked >= MESSAGES, "{acked} acknowledgements for {MESSAGES} messages");

    // The subscriber comes back to every message, in order, duplicates
    // (resends after the kills) counted.
    let mut keeper = options(address, "keeper").persistent_session(true).connect().expect("keeper reconnects");
    assert!(keeper.session_present(), "the stored session was resumed");
    let (mut next, mut duplicates, mut received) = (0u64, 0u64, 0u64);
    let mut seen = HashSet::new();
    while next < MESSAGES {
        assert!(Instant::now() < deadline, "only {next} of {MESSAGES} messages delivered");
        let Some(message) = keeper.recv_timeout(Duration::from_millis(500)).expect("keeper receives") else { continue };
        received += 1;
        let seq = u64::from_be_bytes(message.payload.as_slice().try_into().expect("an 8-byte sequence number"));
        if !seen.insert(seq) {
            duplicates += 1;
            continue;
        }
        assert_eq!(seq, next, "first deliveries in the order they were published");
        next += 1;
    }
    eprintln!("{MESSAGES} messages delivered: {received} deliveries, {duplicates} duplicates, 0 lost");
    assert!(duplicates <= 2 * 256 * 2, "{duplicates} duplicates: more than two windows per kill");
}

/// `tinymq pub` at QoS 1 every 100 ms under client id `dev`, with a will.
fn device(address: SocketAddr, count: Option<&str>) -> Child {
    let address = address.to_string();
    let mut command = tinymq();
    command.args(["pub", "--address", &address, "--client-id", "dev", "--topic", "alive/dev", "--message", "hi"]);
    command.args(["--qos", "1", "--will-topic", "status/dev", "--will-message", "gone", "--will-qos", "1"]);
    match count {
        Some(count) => command.args(["--count", count]),
        None => command.args(["--interval", "0.1"]),
    };
    command.stdout(Stdio::null()).stderr(Stdio::inherit()).spawn().expect("spawn tinymq pub")
}

/// The next message on `topic`, skipping others, within [`WAIT`].
fn next_on(client: &mut Client, topic: &str) -> Option<String> {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if let Some(message) = client.recv_timeout(Duration::from_millis(100)).expect("receive")
            && message.topic == topic
        {
            return Some(String::from_utf8_lossy(&message.payload).into_owned());
        }
    }
    None
}

#[test]
fn a_will_fires_after_kill_9_of_its_client_and_not_after_a_clean_exit() {
    let broker = BrokerProcess::start(&[]);
    let address = broker.tcp_addr();
    let mut watcher = options(address, "watcher").connect().expect("watcher connects");
    watcher.subscribe_qos1("status/#").expect("QoS 1 subscription");
    watcher.subscribe("alive/#").expect("subscription");
    watcher.subscribe("sentinel").expect("subscription");

    // A clean exit (Disconnect) discards the will: the sentinel published
    // after it arrives with no will before it.
    let mut clean = device(address, Some("1"));
    let status = wait_child(&mut clean, WAIT).expect("tinymq pub --count 1 exits");
    assert!(status.success(), "tinymq pub --qos 1 exits 0 once acknowledged: {status}");
    let mut sentinel = options(address, "sentinel").connect().expect("connects");
    sentinel.publish("sentinel", b"after the clean exit", false).expect("publish");
    let deadline = Instant::now() + WAIT;
    loop {
        assert!(Instant::now() < deadline, "the sentinel never arrived");
        let Some(message) = watcher.recv_timeout(Duration::from_millis(100)).expect("receive") else { continue };
        assert_ne!(message.topic, "status/dev", "a will after a clean Disconnect");
        if message.topic == "sentinel" {
            break;
        }
    }

    // Connected (its messages arrive), then SIGKILL: the will comes.
    let mut lost = device(address, None);
    assert_eq!(next_on(&mut watcher, "alive/dev").as_deref(), Some("hi"), "the device is connected");
    lost.kill().expect("SIGKILL the client");
    let _ = lost.wait();
    assert_eq!(next_on(&mut watcher, "status/dev").as_deref(), Some("gone"), "the will after kill -9");
}

#[test]
fn a_persistent_clients_will_fires_when_the_broker_restarts_after_a_kill_9() {
    let data = ScratchDir::new();
    let address = crate::support::free_address();
    let mut broker = start(address, &data);
    // The watcher is away during the restart: the will waits in its queue.
    let mut watcher = options(address, "watcher").persistent_session(true).connect().expect("watcher connects");
    watcher.subscribe_qos1("status/#").expect("QoS 1 subscription");
    watcher.subscribe_qos1("alive/#").expect("QoS 1 subscription");
    watcher.disconnect().expect("clean disconnect");
    let mut device = options(address, "dev")
        .persistent_session(true)
        .will("status/dev", "gone", false, tinymq_net::Qos::AtLeastOnce)
        .reconnect(false)
        .connect()
        .expect("device connects");
    // Acknowledged under `immediate` once its copy for the watcher is
    // committed, and the device's session (with its will) before it.
    device.publish_qos1("alive/dev", b"hi", false).expect("publish");
    assert_eq!(device.wait_acknowledged(WAIT).expect("acknowledged"), 0);

    broker.kill();
    let _broker = start(address, &data);
    let mut watcher = options(address, "watcher").persistent_session(true).connect().expect("watcher reconnects");
    assert_eq!(next_on(&mut watcher, "status/dev").as_deref(), Some("gone"), "the will, published at the restart");
    drop(device);
}

#[test]
fn pubacks_wait_while_the_store_cannot_commit_and_go_out_when_it_recovers() {
    // redb's writes fail with EFBIG once the file outgrows 2 MB (see
    // store_full_disk.rs): under `immediate` no PubAck may come then; the
    // writer keeps the writes and retries them, so once the limit is
    // lifted the PubAcks go out, to a publisher that never reconnected.
    let data = ScratchDir::new();
    let dir = data.path().to_str().expect("a UTF-8 path");
    let endpoint = Endpoint::Tcp(crate::support::free_address());
    let flags = ["--data", dir, "--durability", "immediate"];
    let broker = BrokerProcess::start_at_via(endpoint, &["prlimit", "--fsize=2000000:unlimited"], &flags)
        .expect("broker starts");
    let address = broker.tcp_addr();
    let mut keeper = options(address, "keeper").persistent_session(true).connect().expect("keeper connects");
    keeper.subscribe_qos1("big/#").expect("QoS 1 subscription");
    keeper.disconnect().expect("clean disconnect");

    let address = address.to_string();
    let payload = "x".repeat(20_000);
    let output = tinymq()
        .args(["pub", "--address", &address, "--topic", "big/x", "--message", &payload, "--qos", "1"])
        .args(["--count", "300", "--ack-timeout", "3"])
        .output()
        .expect("run tinymq pub");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("messages to big/x not acknowledged"), "names what was not: {stderr}");

    // A connected publisher's PubAcks are held while commits fail.
    let mut publisher = options(broker.tcp_addr(), "publisher").connect().expect("publisher connects");
    for _ in 0..10 {
        publisher.publish_qos1("big/y", payload.as_bytes(), false).expect("publish");
    }
    let held = publisher.wait_acknowledged(Duration::from_secs(1)).expect("still connected");
    assert_eq!(held, 10, "no PubAck while the store fails");
    // Space returns on the running broker: the retry commits the kept
    // writes, and the held PubAcks go out on the same connection.
    let lifted = std::process::Command::new("prlimit")
        .args(["--pid", &broker.pid().to_string(), "--fsize=unlimited:unlimited"])
        .status()
        .expect("run prlimit");
    assert!(lifted.success(), "prlimit --pid: {lifted}");
    assert_eq!(publisher.wait_acknowledged(WAIT * 4).expect("acknowledged"), 0, "every PubAck, after the retry");
    // And the subscriber's session has every one of them.
    let mut keeper = options(broker.tcp_addr(), "keeper").persistent_session(true).connect().expect("keeper returns");
    let deadline = Instant::now() + WAIT * 4;
    let mut from_publisher = 0;
    while from_publisher < 10 {
        assert!(Instant::now() < deadline, "{from_publisher} of 10 of big/y delivered");
        if let Some(message) = keeper.recv_timeout(Duration::from_millis(200)).expect("receive")
            && message.topic == "big/y"
        {
            from_publisher += 1;
        }
    }
}

#[test]
fn bench_qos_1_acknowledges_and_delivers_every_message_and_leaves_no_session_behind() {
    let data = ScratchDir::new();
    let address = crate::support::free_address();
    let mut broker = start(address, &data);
    let address = address.to_string();
    let output = tinymq()
        .args(["bench", "--address", &address, "--qos", "1", "--count", "5000", "--window", "64"])
        .output()
        .expect("run tinymq bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(stdout.contains("acknowledged: ") && stdout.contains("(5000 in "), "{stdout}");
    assert!(stdout.contains("delivered: ") && stdout.lines().any(|l| l.contains("(5000 in ")), "{stdout}");
    // A clean stop commits everything.
    broker.stop();
    // The subscriber's persistent session was discarded at the end: a
    // restart on the same data restores none (logged before it listens).
    let broker = start(crate::support::free_address(), &data);
    let deadline = Instant::now() + WAIT;
    while !broker.log().iter().any(|line| line.contains("listening on")) {
        assert!(Instant::now() < deadline, "no 'listening on' line: {:?}", broker.log());
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!broker.log().iter().any(|line| line.contains("stored sessions")), "{:?}", broker.log());
}
