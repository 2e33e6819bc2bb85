//! Durable sessions and QoS 1 of in-process clients (`LocalClient`) with
//! real processes: a program embedding the broker, killed with SIGKILL and
//! started again on its data directory, gives its persistent in-process
//! subscriber every committed QoS 1 message again; `tinymq pub --qos 1`
//! reaches an in-process QoS 1 subscriber; an in-process QoS 1 publish
//! reaches `tinymq sub --qos 1 --session`, also while it is away; and
//! `/metrics` and `/api/v1/stats`, scraped with curl, show the figures.
//!
//! The embedding program is this test binary itself: [`embedded_child`],
//! ignored in a normal run, is what the first test starts (twice) as a
//! child process.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use crate::support::tools::require_tool;
use crate::support::{ScratchDir, WAIT, tinymq, wait_child};
use tinymq_net::{Broker, Durability, LocalOptions, Qos};

/// The data directory of the embedding child (set only for it).
const CHILD_DATA: &str = "TINYMQ_E2E_LOCAL_QOS_DATA";
/// How many QoS 1 messages the child publishes in-process (0: none).
const CHILD_PUBLISH: &str = "TINYMQ_E2E_LOCAL_QOS_PUBLISH";
/// The child's subscriber acknowledges the messages numbered below this
/// (0: none), saying `done N` once `ack` returned.
const CHILD_ACK_BELOW: &str = "TINYMQ_E2E_LOCAL_QOS_ACK_BELOW";
/// What the child's lines start with, among the test harness's own.
const MARK: &str = "@@local-qos ";

/// How long the kill -9 test may take on a loaded machine.
const RUN_DEADLINE: Duration = Duration::from_secs(120);

/// Messages the child publishes: fewer than a session's window
/// (`max_inflight`, 1,024), since its subscriber acknowledges none and so
/// is given at most a window of them.
const PUBLISHED: u64 = 600;

/// A program embedding the broker: a persistent in-process subscriber
/// `svc` on `jobs/#` at QoS 1 that acknowledges the messages numbered
/// below [`CHILD_ACK_BELOW`] and no others (it "crashes" mid-message
/// from then on), and, if asked, an in-process publisher of
/// QoS 1 messages under `--durability immediate`, which says `acked N`
/// once `publish_qos1` returned for message N. Then it waits to be
/// killed.
#[test]
#[ignore = "the embedding program the tests in this module start as a child process"]
fn embedded_child() {
    let Some(data) = std::env::var_os(CHILD_DATA) else { return };
    let number = |name: &str| std::env::var(name).ok().and_then(|n| n.parse::<u64>().ok()).unwrap_or(0);
    let (publish, ack_below) = (number(CHILD_PUBLISH), number(CHILD_ACK_BELOW));
    let say = |line: String| eprintln!("{MARK}{line}");
    let loopback = "127.0.0.1:0".parse().unwrap();
    let broker = Broker::builder()
        .listen_tcp(loopback)
        .listen_http(loopback)
        .data_dir(data)
        .durability(Durability::Immediate)
        .threads(2)
        .start()
        .expect("the embedded broker starts");
    let svc = broker
        .local_client(LocalOptions::new("svc").persistent_session(true).manual_ack(true))
        .expect("the in-process subscriber");
    svc.subscribe_qos1("jobs/#").expect("a QoS 1 subscription");
    say(format!("ready {} {} {}", broker.tcp_addr().unwrap(), broker.http_addr().unwrap(), svc.session_present()));
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while let Ok(received) = svc.recv_timeout(Duration::from_secs(1)) {
                if let Some(message) = received {
                    let payload = String::from_utf8_lossy(message.payload());
                    say(format!("got {payload} {} {:?}", message.is_duplicate(), message.qos()));
                    if payload.parse::<u64>().is_ok_and(|n| n < ack_below) {
                        assert!(svc.ack(&message).expect("acknowledged and committed"));
                        say(format!("done {payload}"));
                    }
                }
            }
        });
        if publish > 0 {
            let publisher = broker.client("local-pub").expect("the in-process publisher");
            for n in 0..publish {
                publisher.publish_qos1("jobs/local", n.to_string().as_bytes()).expect("committed");
                say(format!("acked {n}"));
            }
        }
        loop {
            std::thread::park();
        }
    });
}

/// The embedding child, on `data`, and its lines.
struct Embedded {
    child: Child,
    lines: Receiver<String>,
    tcp: SocketAddr,
    http: SocketAddr,
    session_present: bool,
}

impl Embedded {
    fn start(data: &ScratchDir, publish: u64, ack_below: u64) -> Embedded {
        let mut child = Command::new(std::env::current_exe().expect("the test binary"))
            .args(["local_qos::embedded_child", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
            .env(CHILD_DATA, data.path())
            .env(CHILD_PUBLISH, publish.to_string())
            .env(CHILD_ACK_BELOW, ack_below.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the embedding child");
        let stderr = child.stderr.take().expect("piped");
        let (sender, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(at) = line.find(MARK)
                    && sender.send(line[at + MARK.len()..].to_owned()).is_err()
                {
                    break;
                }
            }
        });
        let ready = lines.recv_timeout(WAIT * 6).expect("the child says it is ready");
        let fields: Vec<&str> = ready.split(' ').collect();
        assert_eq!((fields.len(), fields[0]), (4, "ready"), "{ready}");
        Embedded {
            tcp: fields[1].parse().unwrap(),
            http: fields[2].parse().unwrap(),
            session_present: fields[3] == "true",
            child,
            lines,
        }
    }

    fn next_line(&self, deadline: Instant) -> Option<String> {
        match self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => Some(line),
            Err(RecvTimeoutError::Timeout) => panic!("the child was silent until the deadline"),
            Err(RecvTimeoutError::Disconnected) => None,
        }
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET path` with curl, a real scraper.
fn curl(address: SocketAddr, path: &str) -> String {
    let curl = require_tool("curl", "curl");
    let output = Command::new(curl).args(["-sS", "--max-time", "10", &format!("http://{address}{path}")]).output();
    let output = output.expect("run curl");
    assert!(output.status.success(), "curl {path}: {output:?}");
    String::from_utf8(output.stdout).expect("UTF-8")
}

/// The value of the sample `series` in a `/metrics` text.
fn sample(metrics: &str, series: &str) -> Option<u64> {
    metrics.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn every_committed_in_process_publish_reaches_the_persistent_in_process_subscriber_after_kill_9() {
    let data = ScratchDir::new();
    let deadline = Instant::now() + RUN_DEADLINE;
    let mut first = Embedded::start(&data, PUBLISHED, 0);
    assert!(!first.session_present, "a new data directory");
    // Killed mid-run, once a third is acknowledged (committed).
    let mut acked = 0;
    while acked < PUBLISHED / 3 {
        let line = first.next_line(deadline).expect("the child runs");
        if let Some(n) = line.strip_prefix("acked ") {
            assert_eq!(n.parse::<u64>().unwrap(), acked, "acknowledged in order");
            acked += 1;
        }
    }
    first.child.kill().expect("SIGKILL the embedding program");
    let _ = first.child.wait();
    // What it said before it died counts too.
    while let Some(line) = first.next_line(deadline) {
        if line.strip_prefix("acked ").is_some() {
            acked += 1;
        }
    }
    eprintln!("killed the embedding program with SIGKILL after {acked} acknowledged QoS 1 publishes");

    // Started again on the same data: every acknowledged message comes
    // back to the subscriber, in order, at least once.
    let second = Embedded::start(&data, 0, 0);
    assert!(second.session_present, "the stored session was resumed");
    let mut next = 0u64;
    let mut deliveries = 0;
    while next < acked {
        let line = second.next_line(deadline).expect("the restarted child runs");
        let Some(got) = line.strip_prefix("got ") else { continue };
        let fields: Vec<&str> = got.split(' ').collect();
        assert_eq!(fields[2], "AtLeastOnce", "{line}");
        assert_eq!(fields[1], "true", "restored messages carry DUP: {line}");
        let n: u64 = fields[0].parse().unwrap();
        deliveries += 1;
        if n < next {
            continue; // a duplicate
        }
        assert_eq!(n, next, "first deliveries in the order published");
        next += 1;
    }
    eprintln!("all {acked} acknowledged messages delivered again after the restart ({deliveries} deliveries)");

    // The figures, scraped as Prometheus and a dashboard would.
    let metrics = curl(second.http, "/metrics");
    for family in [
        "# TYPE tinymq_sessions gauge",
        "# TYPE tinymq_sessions_persistent gauge",
        "# TYPE tinymq_sessions_online gauge",
        "# TYPE tinymq_qos1_queued_messages gauge",
        "# TYPE tinymq_qos1_inflight_messages gauge",
        "# TYPE tinymq_qos1_acknowledged_total counter",
        "# TYPE tinymq_qos1_resent_total counter",
    ] {
        assert!(metrics.lines().any(|line| line == family), "{family:?} in\n{metrics}");
    }
    assert_eq!(sample(&metrics, "tinymq_sessions_persistent"), Some(1), "{metrics}");
    assert_eq!(sample(&metrics, "tinymq_sessions_online"), Some(1), "{metrics}");
    assert_eq!(sample(&metrics, "tinymq_qos1_acknowledged_total"), Some(0), "it acknowledges nothing");
    let queued = sample(&metrics, "tinymq_qos1_queued_messages").unwrap();
    assert!(queued >= acked, "{queued} queued, {acked} acknowledged publishes");
    assert_eq!(sample(&metrics, "tinymq_qos1_inflight_messages"), Some(queued), "all given out, none acknowledged");
    assert!(sample(&metrics, "tinymq_qos1_resent_total").unwrap() >= acked, "{metrics}");
    assert_eq!(sample(&metrics, "tinymq_dropped_messages_total{reason=\"session_queue\"}"), Some(0));
    let stats: serde_json::Value = serde_json::from_str(&curl(second.http, "/api/v1/stats")).expect("JSON");
    assert_eq!(stats["sessions"]["persistent"], 1, "{stats}");
    assert_eq!(stats["qos1"]["queued"], queued, "{stats}");
    // A binary client over the child's TCP listener is in the same
    // client-id space: nothing to assert beyond the address being live.
    std::net::TcpStream::connect_timeout(&second.tcp, WAIT).expect("the embedded broker's TCP listener");
}

#[test]
fn a_message_the_in_process_subscriber_acknowledged_is_not_delivered_again_after_kill_9() {
    const DONE: u64 = 100;
    let data = ScratchDir::new();
    let deadline = Instant::now() + RUN_DEADLINE;
    let mut first = Embedded::start(&data, PUBLISHED, DONE);
    // Killed once the subscriber has finished (acknowledged, under
    // `immediate` committed) the first hundred.
    let mut published = 0;
    let mut done = 0;
    while done < DONE {
        let line = first.next_line(deadline).expect("the child runs");
        published += u64::from(line.starts_with("acked "));
        done += u64::from(line.starts_with("done "));
    }
    first.child.kill().expect("SIGKILL the embedding program");
    let _ = first.child.wait();
    while let Some(line) = first.next_line(deadline) {
        published += u64::from(line.starts_with("acked "));
    }
    eprintln!("killed with SIGKILL after {done} messages done and {published} published");

    let second = Embedded::start(&data, 0, 0);
    assert!(second.session_present);
    let mut next = DONE;
    while next < published {
        let line = second.next_line(deadline).expect("the restarted child runs");
        let Some(got) = line.strip_prefix("got ") else { continue };
        let n: u64 = got.split(' ').next().unwrap().parse().unwrap();
        assert!(n >= DONE, "message {n} was acknowledged before the kill, and came back");
        if n < next {
            continue;
        }
        assert_eq!(n, next, "first deliveries in the order published");
        next += 1;
    }
    let metrics = curl(second.http, "/metrics");
    let queued = sample(&metrics, "tinymq_qos1_queued_messages").unwrap();
    assert!(queued >= published - DONE && queued <= PUBLISHED - DONE, "{queued} queued: {metrics}");
}

/// A broker in this process with a TCP listener.
fn in_process_broker() -> (Broker, String) {
    let broker = Broker::builder().listen_tcp("127.0.0.1:0".parse().unwrap()).threads(2).start().unwrap();
    let address = broker.tcp_addr().unwrap().to_string();
    (broker, address)
}

#[test]
fn tinymq_pub_at_qos_1_reaches_an_in_process_qos1_subscriber() {
    let (broker, address) = in_process_broker();
    let svc = broker.local_client(LocalOptions::new("svc")).unwrap();
    svc.subscribe_qos1("jobs/#").unwrap();
    let mut publisher = tinymq()
        .args(["pub", "--address", &address, "--client-id", "cli", "--topic", "jobs/net", "--message", "work"])
        .args(["--qos", "1", "--count", "5"])
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn tinymq pub");
    let status = wait_child(&mut publisher, WAIT * 4).expect("tinymq pub exits");
    assert!(status.success(), "tinymq pub --qos 1 exits 0 once every publish is acknowledged: {status}");
    for n in 0..5 {
        let message = svc.recv_timeout(WAIT).unwrap().unwrap_or_else(|| panic!("message {n}"));
        assert_eq!((message.topic(), message.payload(), message.from()), ("jobs/net", &b"work"[..], "cli"));
        assert_eq!(message.qos(), Qos::AtLeastOnce);
    }
    let sessions = broker.stats().sessions;
    assert_eq!((sessions.acknowledged, sessions.queued), (5, 0), "acknowledged on receipt: {sessions:?}");
    broker.shutdown();
}

/// `tinymq sub --qos 1 --session` as `watcher`, for `count` messages.
fn watcher(address: &str, count: u64) -> Child {
    tinymq()
        .args(["sub", "--address", address, "--client-id", "watcher", "--session", "--qos", "1"])
        .args(["--topic", "out/#", "--count", &count.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn tinymq sub")
}

fn watcher_lines(mut sub: Child) -> Vec<String> {
    let status = wait_child(&mut sub, WAIT * 4);
    if status.is_none() {
        let _ = sub.kill();
    }
    let output = sub.wait_with_output().unwrap();
    assert!(status.is_some_and(|s| s.success()), "sub --count exits 0: {status:?} {output:?}");
    String::from_utf8(output.stdout).unwrap().lines().map(str::to_owned).collect()
}

#[test]
fn an_in_process_qos1_publish_reaches_tinymq_sub_with_a_session_also_while_it_is_away() {
    let (broker, address) = in_process_broker();
    let sub = watcher(&address, 2);
    // Subscribed once its session holds the filter.
    let deadline = Instant::now() + WAIT * 4;
    while broker.stats().subscriptions == 0 {
        assert!(Instant::now() < deadline, "tinymq sub never subscribed");
        std::thread::sleep(Duration::from_millis(10));
    }
    let app = broker.client("app").unwrap();
    app.publish_qos1("out/a", b"one").unwrap();
    app.publish_qos1("out/a", b"two").unwrap();
    assert_eq!(watcher_lines(sub), ["out/a one", "out/a two"]);
    // Gone (a clean exit keeps a persistent session): queued meanwhile.
    app.publish_qos1("out/b", b"three").unwrap();
    app.publish_qos1("out/b", b"four").unwrap();
    let sessions = broker.stats().sessions;
    assert_eq!((sessions.persistent, sessions.online, sessions.queued), (1, 1, 2), "{sessions:?}");
    assert_eq!(watcher_lines(watcher(&address, 2)), ["out/b three", "out/b four"], "delivered on its return");
    broker.shutdown();
}

#[test]
fn bench_in_process_at_qos_1_delivers_every_message_through_the_sessions() {
    let output = tinymq()
        .args(["bench", "--in-process", "--qos", "1", "--count", "20000", "--subscribers", "2"])
        .output()
        .expect("run tinymq bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(stdout.contains("QoS 1, one per publish_qos1"), "{stdout}");
    assert!(stdout.contains("delivered: ") && stdout.contains("(40000 in "), "every copy delivered: {stdout}");
    assert!(!stdout.contains("lost:"), "{stdout}");
    let refused = tinymq().args(["bench", "--in-process", "--qos", "1", "--batch", "4"]).output().expect("run");
    assert_eq!(refused.status.code(), Some(2), "a usage error: {refused:?}");
}
