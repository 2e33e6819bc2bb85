//! The `tinymq` command line of CLI.md, run as a real process: exit
//! statuses and messages of every subcommand, `--version` and `--help`,
//! signals, and the `pub`/`sub` commands.

use std::io::Write;
use std::net::TcpListener;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::{BrokerProcess, WAIT, tinymq, wait_child};
use crate::support::{run_tinymq as run, sub_lines};
use tinymq_core::ReasonCode;

fn free_address() -> String {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string()
}

#[test]
fn usage_errors_exit_2_with_one_line_naming_the_flag() {
    // Valid flags around the broker's unknown one, so a broker that ignored
    // it would not touch the default ports (and is killed by `run`).
    let address = free_address();
    for (args, flag) in [
        (&["broker", "--address", &address, "--no-http", "--in-memory", "--bogus"][..], "--bogus"),
        (&["broker", "--threads", "zero"][..], "--threads"),
        (&["broker", "--network", "udp"][..], "--network"),
        (
            &[
                "broker",
                "--address",
                &address,
                "--no-http",
                "--in-memory",
                "--bridge",
                "mqtt://127.0.0.1:1",
                "--bridge-out",
                "a",
                "--bridge-qos",
                "1",
            ][..],
            "--broker-id",
        ),
        (&["broker", "--bridge-qos", "1"][..], "--bridge-qos"),
        (&["pub", "--message", "x"][..], "--topic"),
        (&["sub", "--format", "xml", "--topic", "a"][..], "--format"),
        (&["bench", "--size", "4"][..], "--size"),
        (&["bench", "--protocol", "amqp"][..], "--protocol"),
        (&["bench", "--protocol", "nats", "--tls", "--insecure"][..], "--tls"),
        (&["bench", "--protocol", "mqtt", "--handshakes", "10"][..], "--handshakes"),
        (&["user", "add"][..], "NAME"),
        (&["user", "list", "--bogus"][..], "--bogus"),
        (&["user", "remove", "a/b"][..], "a/b"),
        (&["frobnicate"][..], "frobnicate"),
    ] {
        let output = run(args);
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(output.status.code(), Some(2), "{args:?}: stderr: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: one line: {stderr:?}");
        assert!(stderr.contains(flag), "{args:?}: names {flag}: {stderr:?}");
        assert!(output.stdout.is_empty(), "{args:?}: nothing on stdout: {:?}", output.stdout);
    }
}

#[test]
fn other_failures_exit_1_with_one_line() {
    // Nothing listens on port 1 of loopback.
    let output = run(&["pub", "--address", "127.0.0.1:1", "--topic", "a", "--message", "x"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(String::from_utf8(output.stderr).unwrap().lines().count(), 1);
}

#[test]
fn version_and_help() {
    let output = run(&["--version"]);
    assert!(output.status.success());
    assert_eq!(String::from_utf8(output.stdout).unwrap(), format!("tinymq {}\n", env!("CARGO_PKG_VERSION")));
    for args in [
        &["--help"][..],
        &["broker", "--help"][..],
        &["pub", "--help"][..],
        &["sub", "--help"][..],
        &["bench", "--help"][..],
        &["user", "--help"][..],
    ] {
        let output = run(args);
        assert!(output.status.success(), "{args:?}");
        assert!(String::from_utf8(output.stdout).unwrap().starts_with("Usage:") || args == ["--help"], "{args:?}");
    }
}

#[test]
fn a_busy_address_exits_1_with_one_line_saying_so() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let output = run(&["broker", "--address", &address, "--no-http", "--in-memory"]);
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
    assert!(stderr.contains(&address), "says what failed: {stderr:?}");
}

/// `signal` stops the broker: clients get Disconnect 6, it exits 0 soon.
fn stops_cleanly_on(signal: libc::c_int) {
    let mut broker = BrokerProcess::start(&[]);
    let mut idle = broker.connect("idle");
    let mut subscriber = broker.connect("subscriber");
    subscriber.subscribe("#");
    let sent = Instant::now();
    broker.signal(signal);
    idle.expect_disconnect(ReasonCode::ShuttingDown);
    subscriber.expect_disconnect(ReasonCode::ShuttingDown);
    let status = broker.wait_exit(WAIT);
    let took = sent.elapsed();
    assert_eq!(status.code(), Some(0), "{status}");
    assert!(took < Duration::from_secs(3), "took {took:?} to stop");
}

#[test]
fn sigterm_stops_the_broker_with_status_0_after_telling_clients() {
    stops_cleanly_on(libc::SIGTERM);
}

#[test]
fn sigint_stops_the_broker_with_status_0_after_telling_clients() {
    stops_cleanly_on(libc::SIGINT);
}

#[test]
fn pub_and_sub_commands_talk_through_the_broker() {
    let broker = BrokerProcess::start(&[]);
    let address = broker.tcp_addr().to_string();
    let sub = tinymq()
        .args(["sub", "--address", &address, "--topic", "sensors/#", "--count", "2"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Both messages are retained, so `sub` gets them whether it subscribes
    // before or after they are published: no wait for its readiness.
    let publish = run(&["pub", "--address", &address, "--topic", "sensors/first", "--message", "22.5", "--retain"]);
    assert!(publish.status.success(), "{publish:?}");
    let mut from_stdin = tinymq()
        .args(["pub", "--address", &address, "--topic", "sensors/second", "--retain"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    from_stdin.stdin.take().unwrap().write_all(b"65%\n").unwrap();
    assert!(wait_child(&mut from_stdin, WAIT).expect("pub from stdin exits").success());

    assert_eq!(sub_lines(sub), ["sensors/first 22.5", "sensors/second 65%"]);
}
