//! The binary protocol over WebSocket (`GET /ws` on the HTTP and HTTPS
//! listeners), driven by a real third-party WebSocket client: Python's
//! `websockets` (tests/clients/ws_client.py), against the real binary.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

use crate::support::http::{post, run_checked};
use crate::support::tools::{client_script, python_with_requests};
use crate::support::{BrokerProcess, TestPki, free_address, wait_child};

const DEADLINE: Duration = Duration::from_secs(20);

/// The script's lines as they come, and the script.
struct Script {
    child: Child,
    lines: Receiver<String>,
}

impl Script {
    fn spawn(args: &[&str]) -> Self {
        let mut command = python_with_requests();
        command.arg(client_script("ws_client.py")).args(args).stdout(Stdio::piped()).stderr(Stdio::inherit());
        let mut child = command.spawn().expect("spawn ws_client.py");
        let stdout = child.stdout.take().unwrap();
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Script { child, lines }
    }

    fn next_line(&mut self) -> String {
        self.lines.recv_timeout(DEADLINE).unwrap_or_else(|_| panic!("ws_client.py said nothing more in {DEADLINE:?}"))
    }

    fn finish(mut self) {
        let status = wait_child(&mut self.child, DEADLINE).expect("ws_client.py finishes");
        assert!(status.success(), "ws_client.py failed: {status}");
    }
}

fn run(args: &[&str]) -> String {
    let mut command = python_with_requests();
    command.arg(client_script("ws_client.py")).args(args);
    let output = run_checked(command, DEADLINE, "tests/clients/ws_client.py");
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn the_binary_protocol_runs_over_websocket_with_a_real_client() {
    let broker = BrokerProcess::start_http(&[]);
    let url = format!("ws://{}/ws", broker.http_addr());
    let mut subscriber = Script::spawn(&[&url, "subscribe", "ws/#", "3"]);
    assert_eq!(subscriber.next_line(), "subscribed");
    assert_eq!(subscriber.next_line(), "pong", "a WebSocket ping is answered");

    // From every other face: the binary protocol over TCP, HTTP, and
    // WebSocket again.
    let mut tcp = broker.connect("tcp-pub");
    tcp.publish("ws/tcp", b"from tcp");
    post(broker.http_addr(), "ws/http", "from http", "curl");
    assert_eq!(run(&[&url, "publish", "ws/ws", "from ws"]).trim(), "published 1");

    let got: Vec<String> = (0..3).map(|_| subscriber.next_line()).collect();
    assert_eq!(got, ["ws/tcp from tcp tcp-pub", "ws/http from http curl", "ws/ws from ws ws-pub"]);
    subscriber.finish();

    // And a WebSocket publisher reaches a TCP subscriber.
    let mut watcher = broker.connect("watcher");
    watcher.subscribe("back/#");
    assert_eq!(run(&[&url, "publish", "back/x", "1", "2"]).trim(), "published 2");
    for payload in [&b"1"[..], b"2"] {
        let got = watcher.recv_publish();
        assert_eq!((got.topic.as_str(), &got.payload[..], got.client_id.as_str()), ("back/x", payload, "ws-pub"));
    }
}

#[test]
fn websocket_over_https_is_wss() {
    let pki = TestPki::generate();
    let https = free_address().to_string();
    let broker = BrokerProcess::start(&[
        "--tls-cert",
        TestPki::arg(&pki.cert),
        "--tls-key",
        TestPki::arg(&pki.key),
        "--https",
        &https,
    ]);
    let url = format!("wss://localhost:{}/ws", broker.https_addr().port());
    let ca = TestPki::arg(&pki.ca);
    let mut subscriber = Script::spawn(&[&url, "--ca", ca, "subscribe", "secure/#", "1"]);
    assert_eq!(subscriber.next_line(), "subscribed");
    assert_eq!(subscriber.next_line(), "pong");
    assert_eq!(run(&[&url, "--ca", ca, "publish", "secure/a", "over wss"]).trim(), "published 1");
    assert_eq!(subscriber.next_line(), "secure/a over wss ws-pub");
    subscriber.finish();
}

/// A raw HTTP exchange: the status line and the headers.
fn raw_get(addr: SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(stream.read(&mut byte).unwrap(), 1, "the answer ended early: {head:?}");
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

#[test]
fn a_plain_get_of_ws_gets_426_and_a_text_message_closes_with_1003() {
    let broker = BrokerProcess::start_http(&[]);
    let head = raw_get(broker.http_addr(), "GET /ws HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(head.starts_with("HTTP/1.1 426 "), "{head}");
    assert!(head.contains("Sec-WebSocket-Version: 13\r\n"), "{head}");
    let head = raw_get(
        broker.http_addr(),
        "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: not a key\r\n\r\n",
    );
    assert!(head.starts_with("HTTP/1.1 400 "), "a bad key: {head}");

    let url = format!("ws://{}/ws", broker.http_addr());
    assert_eq!(run(&[&url, "text"]).trim(), "closed 1003", "text is not the binary protocol");
    // Nobody else was harmed: the broker still serves.
    let mut watcher = broker.connect("still-here");
    watcher.subscribe("after/#");
    assert_eq!(run(&[&url, "publish", "after/x", "ok"]).trim(), "published 1");
    assert_eq!(watcher.recv_publish().payload, b"ok");
}
