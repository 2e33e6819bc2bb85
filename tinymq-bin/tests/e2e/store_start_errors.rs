//! A data directory the broker cannot use stops it at start: exit status
//! 1, one line on stderr naming the path, no panic, the file left as it
//! was (never a silent reset), and no port taken. Each case runs the real
//! binary with its two ports already bound by the test: had the broker
//! bound its listeners before opening the store, it would fail on a port
//! instead, and the line would not name the data path.
//!
//! Permissions do not stop root, so as root the broker runs as `nobody`
//! through `setpriv` (util-linux).

use std::io::Read;
use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};

use crate::support::http::{JsonExt, call, eventually};
use crate::support::{BrokerProcess, ScratchDir, WAIT, tinymq_via, wait_child};

/// The store's file in the data directory, as the README names it.
const DATABASE_FILE_NAME: &str = "tinymq.redb";

/// Runs `tinymq broker --data DATA` (through `wrapper` when not empty),
/// expects it to fail at start, and returns its one line of stderr after
/// checking the status and shape.
fn refused_start(wrapper: &[&str], data: &Path) -> String {
    let tcp = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let http = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let mut child = tinymq_via(wrapper)
        .arg("broker")
        .args(["--address", &tcp.local_addr().unwrap().to_string()])
        .args(["--http", &http.local_addr().unwrap().to_string()])
        .arg("--data")
        .arg(data)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tinymq broker");
    let status = wait_child(&mut child, WAIT).unwrap_or_else(|| {
        let _ = child.kill();
        panic!("the broker on {} did not exit", data.display())
    });
    let mut stderr = String::new();
    child.stderr.take().expect("piped stderr").read_to_string(&mut stderr).expect("read stderr");
    assert_eq!(status.code(), Some(1), "exit status for {}; stderr: {stderr:?}", data.display());
    assert!(!stderr.contains("panicked"), "a panic: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line on stderr: {stderr:?}");
    let line = lines[0];
    eprintln!("refused: {line}");
    assert!(line.starts_with("tinymq: "), "{line:?}");
    assert!(line.contains(data.to_str().expect("a UTF-8 path")), "the line names {}: {line:?}", data.display());
    line.to_owned()
}

/// The effective user of this process: 0 when root.
fn euid() -> u32 {
    std::fs::metadata("/proc/self").expect("/proc/self").uid()
}

/// The wrapper that makes permissions apply: as root, run as `nobody`.
fn unprivileged() -> &'static [&'static str] {
    if euid() != 0 {
        return &[];
    }
    let found = Command::new("setpriv").arg("--version").stdout(Stdio::null()).status();
    assert!(found.is_ok_and(|s| s.success()), "running as root: setpriv (util-linux) is needed to test permissions");
    &["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Deterministic bytes that are no database.
fn garbage(len: usize) -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// A real database with a few values, written by a broker that stopped
/// cleanly.
fn database_with_values(dir: &Path) {
    let data = dir.to_str().unwrap();
    let mut broker = BrokerProcess::start_http(&["--data", data]);
    for n in 0..50 {
        let target = format!("/api/v1/publish?topic=kept/{n}&retain=1");
        call(broker.http_addr(), "POST", &target, &[], "x".repeat(500).as_bytes()).assert_status(204, "publish");
    }
    broker.signal(libc::SIGTERM);
    assert!(broker.wait_exit(WAIT).success());
}

#[test]
fn a_directory_in_use_by_a_running_broker_is_refused_and_the_first_broker_keeps_serving() {
    let data = ScratchDir::new();
    let dir = data.path().to_str().unwrap();
    let first = BrokerProcess::start_http(&["--data", dir]);
    call(first.http_addr(), "POST", "/api/v1/publish?topic=before&retain=1", &[], b"1").assert_status(204, "publish");

    let line = refused_start(&[], data.path());
    assert!(line.contains(DATABASE_FILE_NAME) && line.contains("in use by another running broker"), "{line}");

    call(first.http_addr(), "POST", "/api/v1/publish?topic=after&retain=1", &[], b"2").assert_status(204, "publish");
    for (topic, value) in [("before", "1"), ("after", "2")] {
        let reply = call(first.http_addr(), "GET", &format!("/api/v1/value?topic={topic}"), &[], b"");
        assert_eq!(reply.plain_json("value").field("message").str(), value, "{topic}");
    }
}

#[test]
fn a_file_of_garbage_is_refused_and_left_as_it_was() {
    let data = ScratchDir::new();
    let file = data.path().join(DATABASE_FILE_NAME);
    let bytes = garbage(64 * 1024);
    std::fs::write(&file, &bytes).unwrap();
    let line = refused_start(&[], data.path());
    assert!(line.contains(file.to_str().unwrap()) && line.contains("damaged"), "{line}");
    assert_eq!(std::fs::read(&file).unwrap(), bytes, "the file is untouched");
}

#[test]
fn a_truncated_database_is_refused_without_a_panic_and_left_as_it_was() {
    let data = ScratchDir::new();
    database_with_values(data.path());
    let file = data.path().join(DATABASE_FILE_NAME);
    let whole = std::fs::read(&file).unwrap();
    // redb asserts on a file shorter than its header says.
    std::fs::write(&file, &whole[..4096]).unwrap();
    let line = refused_start(&[], data.path());
    assert!(line.contains(file.to_str().unwrap()) && line.contains("damaged"), "{line}");
    assert_eq!(std::fs::read(&file).unwrap(), &whole[..4096], "the file is untouched");
}

#[test]
fn a_data_path_that_is_a_file_is_refused() {
    let data = ScratchDir::new();
    let file = data.path().join("not-a-directory");
    std::fs::write(&file, b"x").unwrap();
    let line = refused_start(&[], &file);
    assert!(line.ends_with("is not a directory"), "{line}");
    let line = refused_start(&[], &file.join("below"));
    assert!(line.contains("cannot create the data directory"), "{line}");
}

#[test]
fn unreadable_and_read_only_places_are_refused() {
    let wrapper = unprivileged();
    let data = ScratchDir::new();
    // The scratch directory must be reachable by the unprivileged user.
    chmod(data.path(), 0o755);
    let saved = data.path().join("saved");
    std::fs::create_dir(&saved).unwrap();
    database_with_values(&saved);
    let database = std::fs::read(saved.join(DATABASE_FILE_NAME)).unwrap();

    // A directory nobody may enter.
    let closed = data.path().join("closed");
    std::fs::create_dir(&closed).unwrap();
    chmod(&closed, 0o000);
    let line = refused_start(wrapper, &closed);
    assert!(line.contains("Permission denied"), "{line}");

    // A read-only directory with no database yet: it cannot be created.
    let read_only = data.path().join("read-only");
    std::fs::create_dir(&read_only).unwrap();
    chmod(&read_only, 0o555);
    let line = refused_start(wrapper, &read_only);
    assert!(line.contains("Permission denied"), "{line}");
    assert!(!read_only.join(DATABASE_FILE_NAME).exists());

    // A database file that may be read but not written, and one that may
    // not even be read.
    for (name, mode) in [("read-only-file", 0o444), ("unreadable-file", 0o000)] {
        let dir = data.path().join(name);
        std::fs::create_dir(&dir).unwrap();
        let file = dir.join(DATABASE_FILE_NAME);
        std::fs::write(&file, &database).unwrap();
        chmod(&file, mode);
        chmod(&dir, 0o777);
        let line = refused_start(wrapper, &dir);
        assert!(line.contains(file.to_str().unwrap()) && line.contains("Permission denied"), "{name}: {line}");
        chmod(&file, 0o644);
        assert_eq!(std::fs::read(&file).unwrap(), database, "{name}: the file is untouched");
    }

    // The saved database itself is fine: a broker starts on it and has
    // its values.
    let broker = BrokerProcess::start_http(&["--data", saved.to_str().unwrap()]);
    eventually(WAIT, "the stored values", || {
        let reply = call(broker.http_addr(), "GET", "/api/v1/value?topic=kept/49", &[], b"");
        (reply.status == 200).then_some(())
    });
    chmod(&closed, 0o755);
}
