//! The configuration file through the real binary: `tinymq config`, keys
//! taking effect, flags overriding them, and errors naming the key and
//! the file.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};

use crate::support::http::{pickup, post, subscribe, triples};
use crate::support::run_tinymq as run;
use crate::support::{BrokerProcess, Endpoint, ScratchDir, free_address};

/// Writes `text` to `name` in `dir`.
fn write(dir: &ScratchDir, name: &str, text: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).expect("write a config file");
    path
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

/// Asserts `tinymq broker --config FILE` fails with `status` and one line
/// containing each of `says`.
fn assert_start_fails(file: &Path, status: i32, says: &[&str]) {
    // Listeners on free ports: a broker that wrongly started would not
    // take the default ones (and is killed by `run`).
    let (address, http) = (free_address().to_string(), free_address().to_string());
    let output = run(&["broker", "--config", path_str(file), "--address", &address, "--http", &http]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(status), "stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
    for part in says {
        assert!(stderr.contains(part), "{stderr:?} should say {part:?}");
    }
}

/// Posts `count` messages to `topic` and returns what PICKUP gives `client`.
fn post_and_pick_up(http: SocketAddr, client: &str, count: usize) -> Vec<String> {
    subscribe(http, client, "cfg/#");
    for i in 0..count {
        post(http, "cfg/n", &i.to_string(), "test");
    }
    triples(&pickup(http, client)).into_iter().map(|(_, _, message)| message).collect()
}

#[test]
fn tinymq_config_prints_a_file_the_broker_starts_with() {
    let output = run(&["config"]);
    assert!(output.status.success(), "{output:?}");
    let printed = String::from_utf8(output.stdout).expect("UTF-8");
    for key in ["[[listener]]", "address = \"127.0.0.1:1883\"", "queue_size = 10000", "peer_budget = 20", "# [tls]"] {
        assert!(printed.contains(key), "{key:?} in\n{printed}");
    }
    let dir = ScratchDir::new();
    let file = write(&dir, "printed.toml", &printed);
    // The file's listeners are the defaults; flags move them to free ports
    // and keep the data in memory.
    let (address, http) = (free_address(), free_address());
    let (address_flag, http_flag) = (address.to_string(), http.to_string());
    let args = [
        "--config",
        path_str(&file),
        "--address",
        &address_flag,
        "--http",
        &http_flag,
        "--in-memory",
        "--threads",
        "1",
    ];
    let broker = BrokerProcess::start_exact(&args, Endpoint::Tcp(address), Some(http))
        .unwrap_or_else(|e| panic!("the printed file: {e}"));
    broker.connect("anonymous").ping();
    assert_eq!(post_and_pick_up(http, "reader", 2), ["0", "1"]);
}

#[test]
fn keys_in_the_file_take_effect_and_flags_override_them() {
    let dir = ScratchDir::new();
    let (address, http) = (free_address(), free_address());
    let file = write(
        &dir,
        "broker.toml",
        &format!(
            "[[listener]]\naddress = \"{address}\"\n\n[http]\naddress = \"{http}\"\nqueue_size = 2\n\n\
             [store]\nin_memory = true\n\n[limits]\nthreads = 1\n"
        ),
    );
    let broker = BrokerProcess::start_exact(&["--config", path_str(&file)], Endpoint::Tcp(address), Some(http))
        .unwrap_or_else(|e| panic!("{e}"));
    broker.connect("on-the-file's-address").ping();
    // A queue of 2: the oldest of 3 is dropped.
    assert_eq!(post_and_pick_up(http, "small-queue", 3), ["1", "2"]);
    drop(broker);

    let other_http = free_address();
    let other_flag = other_http.to_string();
    let args = ["--config", path_str(&file), "--http", &other_flag, "--http-queue-size", "3"];
    let broker =
        BrokerProcess::start_exact(&args, Endpoint::Tcp(address), Some(other_http)).unwrap_or_else(|e| panic!("{e}"));
    assert!(TcpStream::connect(http).is_err(), "--http replaced the file's HTTP listener");
    assert_eq!(post_and_pick_up(other_http, "larger-queue", 3), ["0", "1", "2"]);
    broker.connect("still-on-the-file's-address").ping();
}

#[test]
fn an_unknown_key_fails_naming_it_and_the_file() {
    let dir = ScratchDir::new();
    let file = write(&dir, "typo.toml", "[http]\nqueue_size = 5\nqueu_size = 2\n");
    assert_start_fails(&file, 2, &[path_str(&file), "line 3", "http.queu_size", "unknown field"]);
    let file = write(&dir, "section.toml", "[acess]\nallow_anonymous = true\n");
    assert_start_fails(&file, 2, &[path_str(&file), "acess"]);
}

#[test]
fn a_bad_value_fails_naming_the_key() {
    let dir = ScratchDir::new();
    for (text, says) in [
        ("[http]\nqueue_size = \"many\"\n", &["http.queue_size", "line 2"][..]),
        ("[http]\nqueue_size = 0\n", &["http.queue_size", "at least 1"]),
        ("[access]\nallowed_peers = [\"10.0.0.0/8\", \"10.0.0.0/33\"]\n", &["access.allowed_peers", "10.0.0.0/33"]),
        ("[store]\ndurability = \"sometimes\"\n", &["store.durability", "sometimes"]),
        ("[[listener]]\nnetwork = \"udp\"\n", &["listener[1].network", "udp"]),
        ("[log]\nlevel = \"chatty\"\n", &["log.level", "chatty"]),
        ("not = [toml\n", &["line 1"]),
    ] {
        let file = write(&dir, "bad.toml", text);
        let mut parts = vec![path_str(&file)];
        parts.extend_from_slice(says);
        assert_start_fails(&file, 2, &parts);
    }
}

#[test]
fn a_missing_file_fails_naming_it() {
    let dir = ScratchDir::new();
    let missing = dir.path().join("missing.toml");
    assert_start_fails(&missing, 1, &["cannot read the config file", path_str(&missing)]);
}
