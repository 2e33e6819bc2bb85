//! `tinymq bench --protocol tinymq|nats|mqtt` against the real brokers:
//! every published message is delivered to every subscriber, and `--idle`
//! reports the broker's memory per connection. nats-server and mosquitto
//! are each started on a free loopback port (Debian puts them in
//! /usr/sbin); without them their tests fail, naming `bash tests/run.sh`,
//! which installs them.

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::tools::require_tool;
use crate::support::{BrokerProcess, ScratchDir, free_address, tinymq, wait_child};

/// How long one bench run may take: a debug build on a shared machine.
const BENCH_DEADLINE: Duration = Duration::from_secs(60);

/// A broker we started, killed and reaped when dropped.
struct Foreign {
    child: Child,
    address: SocketAddr,
    _scratch: ScratchDir,
}

impl Foreign {
    /// Starts `program` on a free loopback port (`args` makes its command
    /// line from the port and a scratch directory) and waits until it
    /// accepts connections; tries other ports should one be taken meanwhile.
    fn start(program: &Path, args: impl Fn(u16, &Path) -> Vec<String>) -> Foreign {
        for _ in 0..5 {
            let scratch = ScratchDir::new();
            let address = free_address();
            let mut child = Command::new(program)
                .args(args(address.port(), scratch.path()))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("start {}: {e}", program.display()));
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if TcpStream::connect(address).is_ok() {
                    return Foreign { child, address, _scratch: scratch };
                }
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("{} did not start after 5 attempts", program.display());
    }

    fn nats() -> Foreign {
        let program = require_tool("nats-server", "apt-get install nats-server");
        Foreign::start(&program, |port, _| ["-a", "127.0.0.1", "-p", &port.to_string()].map(str::to_owned).to_vec())
    }

    fn mosquitto() -> Foreign {
        let program = require_tool("mosquitto", "apt-get install mosquitto");
        Foreign::start(&program, |port, dir| {
            // A config file: `-p` alone would also do on loopback in 2.0,
            // this says so explicitly.
            let config = dir.join("mosquitto.conf");
            // No limit on queued QoS 1 messages (default 1000 per client,
            // past which mosquitto drops them): a QoS 1 run must lose none.
            let text = format!("listener {port} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\n");
            std::fs::write(&config, text).unwrap();
            vec!["-c".to_owned(), config.to_str().unwrap().to_owned()]
        })
    }
}

impl Drop for Foreign {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `tinymq bench ARGS`, asserts it exits 0, returns its stdout.
fn bench(args: &[&str]) -> String {
    let mut child = tinymq().arg("bench").args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let status = wait_child(&mut child, BENCH_DEADLINE);
    if status.is_none() {
        let _ = child.kill();
    }
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        status.is_some_and(|s| s.success()),
        "tinymq bench {args:?}: {status:?}\n{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The N of `delivered: R msg/s (N in S s)`.
fn delivered(stdout: &str) -> u64 {
    let line = stdout.lines().find(|l| l.starts_with("delivered:")).unwrap_or_else(|| panic!("no delivered: {stdout}"));
    line.split('(').nth(1).and_then(|rest| rest.split_whitespace().next()).and_then(|n| n.parse().ok()).unwrap()
}

/// 20000 messages to 2 subscribers: 40000 deliveries, and a latency line.
fn all_delivered(protocol: &str, address: SocketAddr) {
    let address = address.to_string();
    let stdout = bench(&["--protocol", protocol, "--address", &address, "--count", "20000", "--subscribers", "2"]);
    assert!(stdout.starts_with(&format!("workload: {protocol}, 1 publisher(s) -> 2 subscriber(s)")), "{stdout}");
    assert_eq!(delivered(&stdout), 40_000, "{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("latency: p50 ")), "{stdout}");
}

/// `--idle 20 --pid PID`: a figure per connection.
fn idle_reported(protocol: &str, address: SocketAddr, pid: u32) {
    let (address, pid) = (address.to_string(), pid.to_string());
    let stdout = bench(&["--protocol", protocol, "--address", &address, "--idle", "20", "--pid", &pid]);
    assert!(stdout.contains(&format!("idle subscribed connections ({protocol}): 20")), "{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("RSS per idle subscribed connection: ")), "{stdout}");
}

#[test]
fn tinymq_delivers_everything() {
    let broker = BrokerProcess::start(&[]);
    all_delivered("tinymq", broker.tcp_addr());
    idle_reported("tinymq", broker.tcp_addr(), broker.pid());
}

#[test]
fn nats_server_delivers_everything() {
    let nats = Foreign::nats();
    all_delivered("nats", nats.address);
    idle_reported("nats", nats.address, nats.child.id());
}

#[test]
fn mosquitto_delivers_everything() {
    let mosquitto = Foreign::mosquitto();
    all_delivered("mqtt", mosquitto.address);
    idle_reported("mqtt", mosquitto.address, mosquitto.child.id());
}

/// `--qos 1`: every publish acknowledged within the window, every delivery
/// acknowledged, all 40000 arrive.
fn all_delivered_at_qos_1(address: SocketAddr) {
    let address = address.to_string();
    let args = [
        "--protocol",
        "mqtt",
        "--qos",
        "1",
        "--window",
        "100",
        "--address",
        &address,
        "--count",
        "20000",
        "--subscribers",
        "2",
    ];
    let stdout = bench(&args);
    let workload = "workload: mqtt QoS 1, 1 publisher(s) (window 100) -> 2 subscriber(s) with kept sessions";
    assert!(stdout.starts_with(workload), "{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("acknowledged: ") && l.contains("(20000 in ")), "{stdout}");
    assert_eq!(delivered(&stdout), 40_000, "{stdout}");
}

#[test]
fn tinymq_s_mqtt_listener_delivers_everything_at_qos_0_and_1() {
    let broker = crate::support::mqtt::MqttBroker::tinymq(&[]);
    all_delivered("mqtt", broker.address);
    all_delivered_at_qos_1(broker.address);
    let pid = broker.tinymq.as_ref().unwrap().pid();
    idle_reported("mqtt", broker.address, pid);
}

#[test]
fn mosquitto_delivers_everything_at_qos_1() {
    all_delivered_at_qos_1(Foreign::mosquitto().address);
}

#[test]
fn the_in_process_bench_delivers_everything() {
    let stdout = bench(&["--in-process", "--count", "20000", "--subscribers", "2"]);
    assert!(stdout.starts_with("workload: in-process, 1 publisher(s) -> 2 subscriber(s)"), "{stdout}");
    assert_eq!(delivered(&stdout), 40_000, "{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("latency: p50 ")), "{stdout}");
}
