//! The binary protocol over a Unix domain socket (`--network unix`), and
//! the socket file's life: removed on a clean stop, replaced when stale,
//! refused when live.

use std::process::Stdio;

use crate::support::{BrokerProcess, Endpoint, ScratchDir, WAIT, tinymq, wait_child};
use tinymq_core::ReasonCode;

fn socket_path(broker: &BrokerProcess) -> std::path::PathBuf {
    match broker.endpoint() {
        Endpoint::Unix(path) => path.clone(),
        Endpoint::Tcp(address) => panic!("TCP broker on {address}"),
    }
}

/// Runs `tinymq broker` on Unix socket `path`, expecting it to fail at
/// once; returns its exit code (`None`: still running after [`WAIT`], then
/// killed) and stderr.
fn failed_start(path: &std::path::Path) -> (Option<i32>, String) {
    let mut child = tinymq()
        .args(["broker", "--network", "unix", "--address", path.to_str().unwrap(), "--no-http", "--in-memory"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_child(&mut child, WAIT);
    if status.is_none() {
        let _ = child.kill();
    }
    let output = child.wait_with_output().unwrap();
    (status.and_then(|s| s.code()), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn pub_sub_over_a_unix_socket_and_a_clean_stop() {
    let mut broker = BrokerProcess::start_unix(&[]);
    let mut sub = broker.connect("");
    sub.subscribe("#");
    let mut publisher = broker.connect("unix-pub");
    publisher.publish("over/unix", b"hello");
    let got = sub.recv_publish();
    assert_eq!(
        (got.type_byte, got.topic.as_str(), got.payload.as_slice(), got.client_id.as_str()),
        (0x02, "over/unix", &b"hello"[..], "unix-pub")
    );
    // The subscriber's assigned id stamps its own publishes too.
    publisher.subscribe("back");
    sub.publish("back", b"hi");
    assert_eq!(publisher.recv_publish().client_id, sub.client_id);

    broker.signal(libc::SIGTERM);
    sub.expect_disconnect(ReasonCode::ShuttingDown);
    publisher.expect_disconnect(ReasonCode::ShuttingDown);
    let status = broker.wait_exit(WAIT);
    assert_eq!(status.code(), Some(0), "{status}");
    let path = socket_path(&broker);
    assert!(!path.exists(), "the socket file {} is removed on a clean stop", path.display());
}

#[test]
fn a_stale_socket_file_is_replaced_and_a_live_one_is_refused() {
    let mut first = BrokerProcess::start_unix(&[]);
    let path = socket_path(&first);

    // Live: a second broker must not steal the path.
    let (code, stderr) = failed_start(&path);
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
    first.connect("still-first").ping();

    // Stale: killed without clean-up, the file stays; a new broker
    // replaces it.
    first.kill();
    assert!(path.exists(), "SIGKILL leaves the socket file behind");
    let second = BrokerProcess::start_at(Endpoint::Unix(path.clone()), &[]).expect("start over a stale socket");
    let mut client = second.connect("on-second");
    client.subscribe("t");
    client.publish("t", b"x");
    assert_eq!(client.recv_publish().payload, b"x");
}

#[test]
fn a_regular_file_at_the_socket_path_is_left_alone() {
    let dir = ScratchDir::new();
    let path = dir.path().join("notes.txt");
    std::fs::write(&path, b"precious").unwrap();
    let (code, stderr) = failed_start(&path);
    assert_eq!(std::fs::read(&path).ok().as_deref(), Some(&b"precious"[..]), "the file was destroyed");
    assert_eq!(code, Some(1), "{stderr}");
}
