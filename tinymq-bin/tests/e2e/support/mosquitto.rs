//! Debian's `mosquitto` as a child process on a free loopback port with a
//! generated config file, and `mosquitto_sub` / `mosquitto_pub` clients
//! for its side; killed and reaped when dropped. A test fails naming
//! `tests/run.sh` if they are missing (see [`super::tools::require_tool`]).

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::tools::require_tool;
use super::{ScratchDir, WAIT, free_address};

/// One `mosquitto` broker, logging everything (its log is how tests know a
/// subscription is in place).
#[derive(Debug)]
pub struct Mosquitto {
    child: Option<Child>,
    address: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
    _dir: ScratchDir,
}

impl Mosquitto {
    /// A broker on a free port, anonymous clients allowed.
    pub fn start() -> Self {
        Self::start_at(free_address())
    }

    /// A broker on `address` (a port picked earlier, for a broker started
    /// after the bridge that dials it).
    pub fn start_at(address: SocketAddr) -> Self {
        Self::start_with(address, "")
    }

    /// A broker on `address` with more lines in its config file (another
    /// listener, a password file).
    pub fn start_with(address: SocketAddr, extra: &str) -> Self {
        let program = require_tool("mosquitto", "apt-get install mosquitto");
        let dir = ScratchDir::new();
        let config = dir.path().join("mosquitto.conf");
        let text = format!(
            // No queue limit: a subscriber slowed by a busy machine loses nothing.
            "listener {} {}\nallow_anonymous true\npersistence false\nmax_queued_messages 0\nlog_dest stderr\n\
             log_type all\n{extra}\n",
            address.port(),
            address.ip()
        );
        std::fs::write(&config, text).expect("write mosquitto.conf");
        let mut child = Command::new(program)
            .arg("-c")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn mosquitto");
        let log = Arc::new(Mutex::new(Vec::new()));
        let lines = BufReader::new(child.stderr.take().expect("piped stderr")).lines();
        let kept = log.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                eprintln!("mosquitto: {line}");
                kept.lock().unwrap().push(line);
            }
        });
        let mut broker = Mosquitto { child: Some(child), address, log, _dir: dir };
        broker.wait_ready();
        broker
    }

    /// A broker on `address` keeping its sessions and queued messages in
    /// `store` (made writable for the `mosquitto` user it may drop to),
    /// saved after every change: a restart on the same `store` after a
    /// kill -9 finds them.
    pub fn start_persistent(address: SocketAddr, store: &std::path::Path) -> Self {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(store, std::fs::Permissions::from_mode(0o777)).expect("chmod the store");
        let extra = format!(
            "persistence true\npersistence_location {}/\nautosave_interval 1\nautosave_on_changes true\n",
            store.display()
        );
        Self::start_with(address, &extra)
    }

    /// Its process id, for signals.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().expect("poll mosquitto")) {
                panic!("mosquitto exited with {status}: {:?}", self.log.lock().unwrap());
            }
            if TcpStream::connect(self.address).is_ok() {
                return;
            }
            assert!(Instant::now() < deadline, "mosquitto not listening after {WAIT:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `mqtt://127.0.0.1:PORT`, as `--bridge` takes it.
    pub fn url(&self) -> String {
        format!("mqtt://{}", self.address)
    }

    /// `127.0.0.1:PORT`, as a bridge's STATS names its server.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Its log lines so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Waits until a log line contains every one of `words`.
    pub fn wait_log(&self, words: &[&str]) -> String {
        let deadline = Instant::now() + WAIT * 2;
        loop {
            if let Some(line) = self.log().into_iter().find(|l| words.iter().all(|w| l.contains(w))) {
                return line;
            }
            assert!(Instant::now() < deadline, "no mosquitto log line with {words:?} in:\n{:#?}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `mosquitto_sub` on `filter` as client `id`, returned once mosquitto
    /// has its subscription.
    pub fn subscribe(&self, id: &str, filter: &str) -> MosquittoSub {
        self.subscribe_with(id, filter, &[])
    }

    /// [`Mosquitto::subscribe`] with more `mosquitto_sub` flags (`-c -q 1`).
    pub fn subscribe_with(&self, id: &str, filter: &str, extra: &[&str]) -> MosquittoSub {
        let program = require_tool("mosquitto_sub", "apt-get install mosquitto-clients");
        let mut child = Command::new(program)
            .args(["-h", "127.0.0.1", "-p", &self.address.port().to_string(), "-i", id, "-t", filter])
            .args(extra)
            // Topic, retain flag, payload in hex: binary payloads survive.
            .args(["-F", "%t %r %x"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn mosquitto_sub");
        let (sender, lines) = channel();
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    return;
                }
            }
        });
        self.wait_log(&["Sending SUBACK to", id]);
        MosquittoSub { child, lines }
    }

    /// `mosquitto_pub` of `payload` to `topic` (an empty one with `-n`),
    /// retained if asked; waits for it to finish.
    pub fn publish(&self, topic: &str, payload: &[u8], retain: bool) {
        let program = require_tool("mosquitto_pub", "apt-get install mosquitto-clients");
        let mut command = Command::new(program);
        command.args(["-h", "127.0.0.1", "-p", &self.address.port().to_string(), "-t", topic]);
        if retain {
            command.arg("-r");
        }
        if payload.is_empty() {
            command.arg("-n");
        } else {
            command.arg("-s");
        }
        let mut child = command.stdin(Stdio::piped()).stdout(Stdio::null()).spawn().expect("spawn mosquitto_pub");
        child.stdin.take().expect("piped stdin").write_all(payload).expect("write the payload");
        let status = child.wait().expect("wait for mosquitto_pub");
        assert!(status.success(), "mosquitto_pub -t {topic} failed: {status}");
    }

    /// `mosquitto_pub -l`: each of `lines` a message to `topic`, on one
    /// connection, in order; waits for it to finish.
    pub fn publish_lines(&self, topic: &str, lines: &[String]) {
        self.publish_lines_with(topic, lines, &[]);
    }

    /// [`Mosquitto::publish_lines`] with more `mosquitto_pub` flags (`-q 1`).
    pub fn publish_lines_with(&self, topic: &str, lines: &[String], extra: &[&str]) {
        let program = require_tool("mosquitto_pub", "apt-get install mosquitto-clients");
        let mut child = Command::new(program)
            .args(["-h", "127.0.0.1", "-p", &self.address.port().to_string(), "-t", topic, "-l"])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn mosquitto_pub");
        let mut stdin = child.stdin.take().expect("piped stdin");
        for line in lines {
            writeln!(stdin, "{line}").expect("write a line");
        }
        drop(stdin);
        let status = child.wait().expect("wait for mosquitto_pub");
        assert!(status.success(), "mosquitto_pub -l -t {topic} failed: {status}");
    }

    /// Kills it and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A running `mosquitto_sub`; killed when dropped.
pub struct MosquittoSub {
    child: Child,
    lines: Receiver<String>,
}

/// One message `mosquitto_sub` printed.
#[derive(Debug, PartialEq, Eq)]
pub struct SubMessage {
    pub topic: String,
    pub retain: bool,
    pub payload: Vec<u8>,
}

impl MosquittoSub {
    /// The next message within `timeout`, if one comes.
    pub fn next_within(&mut self, timeout: Duration) -> Option<SubMessage> {
        match self.lines.recv_timeout(timeout) {
            Ok(line) => {
                let mut parts = line.splitn(3, ' ');
                let (topic, retain, hex) = (parts.next().unwrap(), parts.next(), parts.next().unwrap_or(""));
                let payload = (0..hex.len() / 2)
                    .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex payload"))
                    .collect();
                Some(SubMessage { topic: topic.to_owned(), retain: retain == Some("1"), payload })
            }
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => panic!("mosquitto_sub ended"),
        }
    }

    /// The next message, or a failure after [`WAIT`].
    pub fn recv(&mut self) -> SubMessage {
        self.next_within(WAIT).unwrap_or_else(|| panic!("mosquitto_sub got nothing within {WAIT:?}"))
    }
}

impl Drop for MosquittoSub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
