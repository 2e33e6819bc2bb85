//! MQTT peers for the conformance tests: tinymq with `--mqtt` and a real
//! Debian `mosquitto` (started on a free port with a generated config),
//! side by side, and the `mosquitto_pub` / `mosquitto_sub` clients run as
//! child processes whose output is read with deadlines. A missing program
//! fails the test, naming `bash tests/run.sh` (see
//! [`super::tools::require_tool`]).

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use super::http::run_checked;
use super::tools::require_tool;
use super::{BrokerProcess, ScratchDir, TestPki, WAIT, add_user, free_address};

/// How long a broker may take to listen.
const START_DEADLINE: Duration = Duration::from_secs(10);

/// What `mosquitto_sub -F` prints per message: topic, QoS, retain flag
/// and payload.
const FORMAT: &str = "%t|%q|%r|%p";

/// A user both brokers know, for the credentials scenarios.
pub const USER: (&str, &str) = ("alice", "wonderland");

/// The two brokers every scenario runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Tinymq,
    Mosquitto,
}

/// A broker speaking MQTT on `address`, killed when dropped.
pub struct MqttBroker {
    pub kind: Kind,
    pub address: SocketAddr,
    /// The tinymq process (for its binary and HTTP faces), if it is one.
    pub tinymq: Option<BrokerProcess>,
    mosquitto: Option<Child>,
    /// Flags every client run against it gets (`--cafile` for TLS).
    client_flags: Vec<String>,
    _dir: ScratchDir,
}

impl MqttBroker {
    /// tinymq with an MQTT listener on a free port (and HTTP), anonymous
    /// clients allowed, `extra` flags added.
    pub fn tinymq(extra: &[&str]) -> Self {
        let dir = ScratchDir::new();
        let address = free_address();
        let mqtt = address.to_string();
        let mut flags = vec!["--mqtt", mqtt.as_str()];
        flags.extend_from_slice(extra);
        let broker = BrokerProcess::start_http(&flags);
        wait_listening(address, "tinymq's MQTT listener");
        MqttBroker {
            kind: Kind::Tinymq,
            address,
            tinymq: Some(broker),
            mosquitto: None,
            client_flags: Vec::new(),
            _dir: dir,
        }
    }

    /// tinymq with `--mqtts` on a free port, presenting `pki`'s server
    /// certificate; its clients trust `pki`'s CA.
    pub fn tinymq_tls(pki: &TestPki) -> Self {
        let address = free_address();
        let mqtts = address.to_string();
        let flags = ["--tls-cert", TestPki::arg(&pki.cert), "--tls-key", TestPki::arg(&pki.key), "--mqtts", &mqtts];
        let mut broker = Self::tinymq(&flags);
        wait_listening(address, "tinymq's MQTT-over-TLS listener");
        broker.address = address;
        broker.client_flags = vec!["--cafile".into(), TestPki::arg(&pki.ca).into()];
        broker
    }

    /// tinymq whose only user is [`USER`], anonymous clients refused.
    pub fn tinymq_with_user() -> Self {
        let dir = ScratchDir::new();
        add_user(dir.path(), USER.0, USER.1, false);
        let data = dir.path().to_str().unwrap().to_owned();
        let mut broker = Self::tinymq(&["--data", &data, "--allow-anonymous", "false"]);
        broker._dir = dir;
        broker
    }

    /// Debian's mosquitto on a free loopback port, anonymous clients
    /// allowed.
    pub fn mosquitto() -> Self {
        Self::start_mosquitto(false)
    }

    /// mosquitto whose only user is [`USER`] (a password file made by
    /// `mosquitto_passwd`), anonymous clients refused.
    pub fn mosquitto_with_user() -> Self {
        Self::start_mosquitto(true)
    }

    fn start_mosquitto(with_user: bool) -> Self {
        let program = require_tool("mosquitto", "apt-get install mosquitto");
        let dir = ScratchDir::new();
        let address = free_address();
        let mut config = format!("listener {} 127.0.0.1\n", address.port());
        if with_user {
            let passwd = require_tool("mosquitto_passwd", "apt-get install mosquitto");
            let file = dir.path().join("passwords");
            let mut command = Command::new(passwd);
            command.arg("-b").arg("-c").arg(&file).args([USER.0, USER.1]);
            run_checked(command, WAIT, "mosquitto_passwd");
            config += &format!("allow_anonymous false\npassword_file {}\n", file.display());
        } else {
            config += "allow_anonymous true\n";
        }
        let path = dir.path().join("mosquitto.conf");
        std::fs::write(&path, config).unwrap();
        let child = Command::new(program)
            .arg("-c")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn mosquitto");
        let mut broker = MqttBroker {
            kind: Kind::Mosquitto,
            address,
            tinymq: None,
            mosquitto: Some(child),
            client_flags: Vec::new(),
            _dir: dir,
        };
        let deadline = Instant::now() + START_DEADLINE;
        while TcpStream::connect(address).is_err() {
            if let Some(status) = broker.mosquitto.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!("mosquitto exited with {status} before listening on {address}");
            }
            assert!(Instant::now() < deadline, "mosquitto not listening on {address} after {START_DEADLINE:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
        broker
    }

    /// Both brokers, as each scenario runs against both.
    pub fn both() -> [MqttBroker; 2] {
        [Self::tinymq(&[]), Self::mosquitto()]
    }

    /// `-h 127.0.0.1 -p PORT` and the client flags, for the mosquitto
    /// clients.
    fn target(&self) -> Vec<String> {
        let mut flags = vec!["-h".into(), "127.0.0.1".into(), "-p".into(), self.address.port().to_string()];
        flags.extend(self.client_flags.iter().cloned());
        flags
    }

    /// Runs `mosquitto_pub ARGS` against this broker to completion.
    pub fn publish(&self, args: &[&str]) -> Output {
        let program = require_tool("mosquitto_pub", "apt-get install mosquitto-clients");
        let mut command = Command::new(program);
        command.args(self.target()).args(args).stdin(Stdio::null());
        let mut child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn mosquitto_pub");
        let status = super::wait_child(&mut child, WAIT);
        if status.is_none() {
            let _ = child.kill();
        }
        let output = child.wait_with_output().unwrap();
        assert!(status.is_some(), "{:?}: mosquitto_pub {args:?} still running after {WAIT:?}", self.kind);
        output
    }

    /// `mosquitto_pub ARGS`, asserted to succeed.
    pub fn publish_ok(&self, args: &[&str]) {
        let output = self.publish(args);
        assert!(
            output.status.success(),
            "{:?}: mosquitto_pub {args:?} failed: {}",
            self.kind,
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// A `mosquitto_sub` on `topics` with `args`, returned once it is
    /// subscribed: it also subscribes to a probe topic, and a probe is
    /// published until one comes back.
    pub fn subscribe(&self, topics: &[&str], args: &[&str]) -> Subscriber {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let probe = format!("probe/{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let program = require_tool("mosquitto_sub", "apt-get install mosquitto-clients");
        let mut command = Command::new(program);
        command.args(self.target()).args(["-F", FORMAT, "-t", &probe]).args(args);
        for topic in topics {
            command.args(["-t", topic]);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn mosquitto_sub");
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = child.stderr.take().expect("piped stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("mosquitto_sub: {line}");
            }
        });
        let mut subscriber = Subscriber { child, lines, probe, kind: self.kind, early: Vec::new() };
        // The probe is published with the subscriber's credentials, if any.
        let topic = subscriber.probe.clone();
        let mut probe = vec!["-t", topic.as_str(), "-m", "probe"];
        for flag in ["-u", "-P"] {
            if let Some(at) = args.iter().position(|&a| a == flag) {
                probe.extend_from_slice(&args[at..at + 2]);
            }
        }
        let deadline = Instant::now() + WAIT;
        loop {
            self.publish_ok(&probe);
            if subscriber.wait_probe(Duration::from_millis(200)) {
                return subscriber;
            }
            assert!(Instant::now() < deadline, "{:?}: mosquitto_sub {topics:?} never got its probe", self.kind);
        }
    }
}

impl Drop for MqttBroker {
    fn drop(&mut self) {
        if let Some(mut child) = self.mosquitto.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A running `mosquitto_sub`, its lines (`topic|qos|retain|payload`)
/// read with deadlines; probes are skipped. Killed when dropped.
pub struct Subscriber {
    child: Child,
    lines: Receiver<String>,
    probe: String,
    kind: Kind,
    /// Lines that came before the probe answered (stored values sent at
    /// subscription), handed out first.
    early: Vec<String>,
}

impl Subscriber {
    /// Whether a probe came back within `timeout`; other lines are kept.
    fn wait_probe(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while let Ok(line) = self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            if line.starts_with(&format!("{}|", self.probe)) {
                return true;
            }
            self.early.push(line);
        }
        false
    }

    /// The next message line within [`WAIT`]; panics otherwise.
    pub fn line(&mut self) -> String {
        if !self.early.is_empty() {
            return self.early.remove(0);
        }
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with(&format!("{}|", self.probe)) => continue,
                Ok(line) => return line,
                Err(_) => panic!("{:?}: mosquitto_sub printed nothing more within {WAIT:?}", self.kind),
            }
        }
    }

    /// SIGKILL: the connection ends without a DISCONNECT.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits until something accepts connections on `address`.
pub fn wait_listening(address: SocketAddr, what: &str) {
    let deadline = Instant::now() + START_DEADLINE;
    while TcpStream::connect(address).is_err() {
        assert!(Instant::now() < deadline, "{what} not listening on {address} after {START_DEADLINE:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
