//! End-to-end tests of the binary protocol against the real `tinymq`
//! binary, over real TCP and Unix sockets.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tinymq_core::codec::parse_reason;
use tinymq_core::{Decoded, Decoder, Frame, FrameLimits, FrameType, ReasonCode};

/// The `tinymq` binary next to this test's own executable
/// (`target/<profile>/deps/<test>` → `target/<profile>/tinymq`).
/// `cargo test --workspace` builds it first: tinymq-bin has integration
/// tests of its own (tinymq-bin/tests/cli.rs), and cargo builds a
/// package's binaries before running any test when it does.
fn binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let path = exe.parent().and_then(|deps| deps.parent()).expect("target/<profile>").join("tinymq");
    assert!(
        path.exists(),
        "{} is missing: run `cargo build -p tinymq-bin` (cargo test --workspace does)",
        path.display()
    );
    path
}

/// A broker child process, killed when dropped.
struct BrokerProcess {
    child: Child,
    address: String,
}

impl BrokerProcess {
    /// Starts a broker on a port of the system's choosing and learns which
    /// from its "listening on" log line: no port can be taken in between.
    fn start(extra: &[&str]) -> Self {
        let mut child = Command::new(binary())
            .args(["broker", "--address", "127.0.0.1:0", "--no-http", "--in-memory", "--log-level", "info"])
            .args(extra)
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tinymq broker");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let address = loop {
            let line = lines.next().expect("the broker exited before listening").unwrap();
            if let Some(address) = line.split("listening on tcp://").nth(1) {
                break address.trim().to_owned();
            }
        };
        // Keep draining the log so the broker never blocks on a full pipe;
        // it shows up in the output of a failing test.
        std::thread::spawn(move || lines.map_while(Result::ok).for_each(|line| eprintln!("broker: {line}")));
        BrokerProcess { child, address }
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An owned copy of a received frame.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Got {
    kind: FrameType,
    retain: bool,
    topic: String,
    payload: Vec<u8>,
    client_id: String,
}

impl Got {
    fn reason(&self) -> Option<u8> {
        parse_reason(&self.payload).map(|(code, _)| code)
    }
}

trait Socket: Read + Write {
    fn set_timeout(&self, timeout: Duration);
}

impl Socket for TcpStream {
    fn set_timeout(&self, timeout: Duration) {
        self.set_read_timeout(Some(timeout)).unwrap();
    }
}

impl Socket for UnixStream {
    fn set_timeout(&self, timeout: Duration) {
        self.set_read_timeout(Some(timeout)).unwrap();
    }
}

/// A raw protocol peer: sends bytes, reads frames with a timeout.
struct Peer<S: Socket> {
    socket: S,
    buf: Vec<u8>,
}

const WAIT: Duration = Duration::from_secs(5);

impl Peer<TcpStream> {
    fn tcp(address: &str) -> Self {
        Peer { socket: TcpStream::connect(address).unwrap(), buf: Vec::new() }
    }

    /// Connects and completes the Connect/ConnAck exchange.
    fn connect(address: &str, client_id: &str) -> Self {
        let mut peer = Self::tcp(address);
        peer.send(Frame::connect(client_id, b""));
        let ack = peer.next();
        assert_eq!(ack.kind, FrameType::ConnAck, "{ack:?}");
        peer
    }
}

impl<S: Socket> Peer<S> {
    fn send(&mut self, frame: Frame<'_>) {
        self.send_bytes(&frame.to_vec());
    }

    fn send_bytes(&mut self, bytes: &[u8]) {
        self.socket.write_all(bytes).unwrap();
    }

    /// The next frame, or `None` if none arrives within `timeout` (or the
    /// connection ends).
    fn try_next(&mut self, timeout: Duration) -> Option<Got> {
        let decoder = Decoder::new(FrameLimits { max_payload_len: 16 << 20, ..FrameLimits::default() });
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Decoded::Frame { frame, consumed }) = decoder.decode(&self.buf) {
                let got = Got {
                    kind: frame.kind,
                    retain: frame.retain,
                    topic: frame.topic.into(),
                    payload: frame.payload.into(),
                    client_id: frame.client_id.into(),
                };
                self.buf.drain(..consumed);
                return Some(got);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.socket.set_timeout(left);
            let mut chunk = [0u8; 64 * 1024];
            match self.socket.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    fn next(&mut self) -> Got {
        self.try_next(WAIT).expect("a frame within 5 s")
    }

    /// Reads until a Disconnect, asserts its reason, then asserts EOF.
    fn expect_disconnect(&mut self, reason: ReasonCode) {
        loop {
            let frame = self.next();
            if frame.kind == FrameType::Disconnect {
                assert_eq!(frame.reason(), Some(reason as u8), "{frame:?}");
                break;
            }
        }
        self.expect_eof();
    }

    fn expect_eof(&mut self) {
        self.socket.set_timeout(WAIT);
        let mut byte = [0u8; 1];
        match self.socket.read(&mut byte) {
            Ok(0) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            other => panic!("expected the broker to close the connection, got {other:?}"),
        }
    }

    fn subscribe(&mut self, filter: &str) {
        self.send(Frame::with_topic(FrameType::Subscribe, filter));
        let ack = self.next();
        assert_eq!((ack.kind, ack.topic.as_str(), ack.payload.as_slice()), (FrameType::SubAck, filter, &[][..]));
    }
}

#[test]
fn pub_sub_over_tcp_stamps_the_sender() {
    let broker = BrokerProcess::start(&[]);
    let mut sub = Peer::connect(&broker.address, "sub");
    sub.subscribe("sensors/+/temperature");
    let mut publisher = Peer::connect(&broker.address, "thermometer");
    publisher.send(Frame::publish("sensors/kitchen/temperature", b"21.5", "forged", false));
    let got = sub.next();
    assert_eq!(
        (got.kind, got.topic.as_str(), got.payload.as_slice(), got.client_id.as_str(), got.retain),
        (FrameType::Publish, "sensors/kitchen/temperature", &b"21.5"[..], "thermometer", false)
    );
}

#[test]
fn pub_sub_over_a_unix_socket() {
    let dir = std::env::temp_dir().join(format!("tinymq-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("broker.sock");
    let mut child = Command::new(binary())
        .args(["broker", "--network", "unix", "--address", path.to_str().unwrap(), "--no-http", "--in-memory"])
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let connect = || loop {
        match UnixStream::connect(&path) {
            Ok(stream) => return stream,
            Err(_) => {
                assert!(Instant::now() < deadline, "no Unix listener at {}", path.display());
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    };
    let mut sub = Peer { socket: connect(), buf: Vec::new() };
    sub.send(Frame::connect("", b""));
    let ack = sub.next();
    assert_eq!(ack.kind, FrameType::ConnAck);
    assert!(!ack.client_id.is_empty(), "an empty id is assigned one");
    sub.subscribe("#");
    let mut publisher = Peer { socket: connect(), buf: Vec::new() };
    publisher.send(Frame::connect("unix-pub", b""));
    assert_eq!(publisher.next().kind, FrameType::ConnAck);
    publisher.send(Frame::publish("over/unix", b"hello", "", false));
    let got = sub.next();
    assert_eq!(
        (got.topic.as_str(), got.payload.as_slice(), got.client_id.as_str()),
        ("over/unix", &b"hello"[..], "unix-pub")
    );
    signal(&mut child, libc::SIGTERM);
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(!path.exists(), "the socket file is removed on a clean stop");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Sends `signal` to a child process.
fn signal(child: &mut Child, signal: i32) {
    // SAFETY: kill(2) with a pid we spawned and still own; no memory involved.
    let result = unsafe { libc::kill(child.id() as i32, signal) };
    assert_eq!(result, 0, "kill failed");
}

#[test]
fn wildcards_system_topics_and_order() {
    let broker = BrokerProcess::start(&[]);
    let mut all = Peer::connect(&broker.address, "all");
    all.subscribe("#");
    let mut overlapping = Peer::connect(&broker.address, "overlapping");
    for filter in ["a/#", "a/+", "a/b", "+/b"] {
        overlapping.subscribe(filter);
    }
    let mut publisher = Peer::connect(&broker.address, "pub");
    publisher.send(Frame::publish("$SYS/broker/x", b"sys", "", false));
    publisher.send(Frame::publish("a", b"parent", "", false));
    for i in 0..1000u32 {
        publisher.send(Frame::publish("a/b", &i.to_be_bytes(), "", false));
    }
    // `#` does not see `$SYS/...`; `a/#` matches `a` itself.
    assert_eq!(all.next().payload, b"parent");
    assert_eq!(overlapping.next().payload, b"parent");
    for i in 0..1000u32 {
        assert_eq!(all.next().payload, i.to_be_bytes(), "order kept");
        // Four matching filters, one delivery each.
        assert_eq!(overlapping.next().payload, i.to_be_bytes(), "once each, in order");
    }
    publisher.send(Frame::publish("z", b"sentinel", "", false));
    assert_eq!(all.next().payload, b"sentinel");
    assert_eq!(overlapping.try_next(Duration::from_millis(200)), None);
}

#[test]
fn retained_values_set_and_cleared() {
    let broker = BrokerProcess::start(&[]);
    let mut publisher = Peer::connect(&broker.address, "pub");
    // The publisher hears its own messages: once it has, the broker has
    // processed them, whichever event loop other connections are on.
    publisher.subscribe("home/#");
    publisher.send(Frame::publish("home/temp", b"20", "", true));
    publisher.send(Frame::publish("home/hum", b"40", "", false));
    assert_eq!(publisher.next().payload, b"20");
    assert_eq!(publisher.next().payload, b"40");
    let mut live = Peer::connect(&broker.address, "live");
    live.subscribe("home/#");
    let retained = live.next();
    assert_eq!((retained.kind, retained.retain, retained.topic.as_str()), (FrameType::Publish, true, "home/temp"));
    publisher.send(Frame::publish("home/temp", b"21", "", true));
    assert_eq!(publisher.next().payload, b"21");
    let update = live.next();
    assert_eq!((update.retain, update.payload.as_slice()), (false, &b"21"[..]), "live traffic never carries RETAIN");
    publisher.send(Frame::publish("home/temp", b"", "", true));
    publisher.send(Frame::publish("home/sentinel", b"s", "", false));
    assert_eq!(live.next().topic, "home/sentinel", "the deleting publish is not delivered");
    assert_eq!(publisher.next().topic, "home/sentinel");

    let mut late = Peer::connect(&broker.address, "late");
    late.subscribe("home/#");
    publisher.send(Frame::publish("home/sentinel", b"s2", "", false));
    let next = late.next();
    assert_eq!((next.topic.as_str(), next.retain), ("home/sentinel", false), "no retained value was left");
}

#[test]
fn takeover_disconnects_the_first_connection() {
    let broker = BrokerProcess::start(&[]);
    let mut first = Peer::connect(&broker.address, "device-7");
    first.subscribe("x");
    let mut second = Peer::connect(&broker.address, "device-7");
    first.expect_disconnect(ReasonCode::SessionTakenOver);
    second.subscribe("x");
    let mut publisher = Peer::connect(&broker.address, "pub");
    publisher.send(Frame::publish("x", b"1", "", false));
    assert_eq!(second.next().payload, b"1");
}

#[test]
fn keep_alive_closes_silent_connections_and_spares_pinging_ones() {
    let broker = BrokerProcess::start(&["--keep-alive", "1"]);
    let started = Instant::now();
    let mut silent = Peer::connect(&broker.address, "silent");
    let mut pinger = Peer::connect(&broker.address, "pinger");
    let mut pongs = 0;
    while started.elapsed() < Duration::from_secs(3) {
        pinger.send(Frame::empty(FrameType::Ping));
        assert_eq!(pinger.next().kind, FrameType::Pong);
        pongs += 1;
        std::thread::sleep(Duration::from_millis(400));
    }
    assert!(pongs >= 5);
    // The silent one was cut after 1.5 s of silence, not before 1 s.
    silent.expect_disconnect(ReasonCode::KeepAliveTimeout);
    pinger.send(Frame::empty(FrameType::Ping));
    assert_eq!(pinger.next().kind, FrameType::Pong, "the pinging connection is still up");

    let fresh = Instant::now();
    let mut another = Peer::connect(&broker.address, "another");
    another.expect_disconnect(ReasonCode::KeepAliveTimeout);
    let waited = fresh.elapsed();
    assert!(waited >= Duration::from_secs(1), "closed too early: {waited:?}");
}

/// One malformed input on its own connection, while `bystander` keeps
/// being served.
fn assert_refused(broker: &BrokerProcess, inputs: &[Vec<u8>], reason: ReasonCode, bystander: &mut Peer<TcpStream>) {
    let mut peer = Peer::tcp(&broker.address);
    for input in inputs {
        peer.send_bytes(input);
    }
    peer.expect_disconnect(reason);
    let mut publisher = Peer::connect(&broker.address, "");
    publisher.send(Frame::publish("bystander", b"still served", "", false));
    assert_eq!(bystander.next().payload, b"still served");
}

#[test]
fn malformed_input_is_refused_with_its_reason_and_harms_no_one() {
    let broker = BrokerProcess::start(&[]);
    let mut bystander = Peer::connect(&broker.address, "bystander");
    bystander.subscribe("bystander");
    let connect = Frame::connect("", b"").to_vec();
    let with_connect = |frame: Vec<u8>| vec![connect.clone(), frame];
    let cases: Vec<(&str, Vec<Vec<u8>>, ReasonCode)> = vec![
        ("unknown type 10", with_connect(vec![10, 0, 0, 0, 0, 0, 0, 0, 0]), ReasonCode::ProtocolError),
        ("unknown type 31", with_connect(vec![31, 0, 0, 0, 0, 0, 0, 0, 0]), ReasonCode::ProtocolError),
        ("flag 0x40 on publish", with_connect(vec![0x42, 0, 1, b'a', 0, 0, 0, 0, 0, 0]), ReasonCode::ProtocolError),
        ("flag 0x80 on subscribe", with_connect(vec![0x83, 0, 1, b'a', 0, 0, 0, 0, 0, 0]), ReasonCode::ProtocolError),
        ("publish before connect", vec![Frame::publish("a", b"x", "", false).to_vec()], ReasonCode::ProtocolError),
        ("second connect", with_connect(connect.clone()), ReasonCode::ProtocolError),
        (
            "wildcard in publish",
            with_connect(Frame::publish("a/#", b"x", "", false).to_vec()),
            ReasonCode::InvalidTopic,
        ),
        ("invalid UTF-8 topic", with_connect(vec![2, 0, 2, 0xc3, 0x28, 0, 0, 0, 0, 0, 0]), ReasonCode::ProtocolError),
        (
            "payload length 0xFFFFFFFF",
            with_connect(vec![2, 0, 1, b'a', 0xff, 0xff, 0xff, 0xff]),
            ReasonCode::FrameTooLarge,
        ),
        ("payload just over 1 MiB", with_connect(vec![2, 0, 1, b'a', 0, 0x10, 0, 1]), ReasonCode::FrameTooLarge),
        ("topic over 4096 bytes", with_connect(vec![2, 0x10, 0x01]), ReasonCode::FrameTooLarge),
        (
            "client id over 256 bytes",
            vec![[&[0u8, 0, 0, 0, 0, 0, 0, 0x01, 0x01][..]].concat()],
            ReasonCode::FrameTooLarge,
        ),
    ];
    for (name, inputs, reason) in cases {
        eprintln!("case: {name}");
        assert_refused(&broker, &inputs, reason, &mut bystander);
    }

    // Half a frame, then the client hangs up: the broker just lets go.
    let mut truncated = Peer::tcp(&broker.address);
    truncated.send_bytes(&connect);
    truncated.send_bytes(&Frame::publish("bystander", b"never whole", "", false).to_vec()[..8]);
    drop(truncated);
    let mut publisher = Peer::connect(&broker.address, "");
    publisher.send(Frame::publish("bystander", b"after truncation", "", false));
    assert_eq!(bystander.next().payload, b"after truncation");

    // A bad filter is refused in its SubAck; the connection stays usable.
    let mut peer = Peer::connect(&broker.address, "filters");
    peer.send(Frame::with_topic(FrameType::Subscribe, "a/#/b"));
    let ack = peer.next();
    assert_eq!((ack.kind, ack.reason()), (FrameType::SubAck, Some(ReasonCode::InvalidTopic as u8)));
    peer.subscribe("a/#");
}

#[test]
fn a_thousand_connections_each_get_their_own_message() {
    let broker = BrokerProcess::start(&[]);
    let mut subscribers: Vec<Peer<TcpStream>> = (0..1000)
        .map(|i| {
            let mut peer = Peer::connect(&broker.address, &format!("sub-{i}"));
            peer.subscribe(&format!("own/{i}"));
            peer
        })
        .collect();
    let mut publisher = Peer::connect(&broker.address, "pub");
    for i in 0..1000 {
        publisher.send(Frame::publish(&format!("own/{i}"), format!("for {i}").as_bytes(), "", false));
    }
    for (i, peer) in subscribers.iter_mut().enumerate() {
        let got = peer.next();
        assert_eq!((got.topic, got.payload), (format!("own/{i}"), format!("for {i}").into_bytes()));
    }
}

#[test]
fn sigterm_stops_the_broker_cleanly_and_tells_clients() {
    let mut broker = BrokerProcess::start(&[]);
    let mut client = Peer::connect(&broker.address, "watcher");
    signal(&mut broker.child, libc::SIGTERM);
    client.expect_disconnect(ReasonCode::ShuttingDown);
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = broker.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "broker still running 10 s after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "exit status {status:?}");
}

#[test]
fn pub_and_sub_commands_talk_through_the_broker() {
    let broker = BrokerProcess::start(&[]);
    let sub = Command::new(binary())
        .args(["sub", "--address", &broker.address, "--topic", "sensors/#", "--count", "2"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Retained values reach `sub` whether it subscribes before or after
    // they are published, so no wait for its readiness is needed.
    let publish = |args: &[&str]| {
        let status = Command::new(binary()).args(["pub", "--address", &broker.address]).args(args).status().unwrap();
        assert!(status.success());
    };
    publish(&["--topic", "sensors/first", "--message", "22.5", "--retain"]);
    let mut child = Command::new(binary())
        .args(["pub", "--address", &broker.address, "--topic", "sensors/second", "--retain"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"65%\n").unwrap();
    assert!(child.wait().unwrap().success());
    let output = sub.wait_with_output().unwrap();
    assert!(output.status.success());
    let mut lines: Vec<String> = String::from_utf8(output.stdout).unwrap().lines().map(str::to_owned).collect();
    lines.sort();
    assert_eq!(lines, ["sensors/first 22.5", "sensors/second 65%"]);
}
