//! The web UI at `/` in a real headless Chromium: the real binary, driven
//! by `tests/browser/ui.test.mjs` (playwright-core) while a raw TCP client
//! here checks, on its own, what the page published.
//!
//! It needs Debian's `chromium`, node and the script's `node_modules`;
//! without them it fails, naming `bash tests/run.sh`, which installs them.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::{BrokerProcess, Next, RawClient, WAIT, add_user, tools, wait_child};

/// The whole browser run: start, page loads, every check, screenshots.
const BROWSER_DEADLINE: Duration = Duration::from_secs(120);

/// Runs the browser script against `broker`, its screenshots going to
/// `target/SCREENSHOTS`; returns its standard output, after asserting that
/// it passed.
fn run_browser_test(broker: &BrokerProcess, run: &str, screenshots: &str, extra: &[&str]) -> String {
    let chromium = tools::chromium();
    let node = tools::require_tool("node", "apt-get install nodejs");
    tools::require_browser_packages();
    let screenshots = tools::workspace_dir().join("target").join(screenshots);
    let mut child = Command::new(node)
        .arg(tools::browser_dir().join("ui.test.mjs"))
        .args(["--http", &broker.http_url(), "--tcp", &broker.tcp_addr().to_string()])
        .args(["--version", env!("CARGO_PKG_VERSION"), "--run", run])
        .arg("--chromium")
        .arg(&chromium)
        .arg("--screenshots")
        .arg(&screenshots)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run node tests/browser/ui.test.mjs");
    // Drained on threads, so the script never blocks on a full pipe.
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("piped stdout")));
    let stderr = drain(Box::new(child.stderr.take().expect("piped stderr")));
    let status = wait_child(&mut child, BROWSER_DEADLINE);
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    println!("{stdout}");
    let status =
        status.unwrap_or_else(|| panic!("the browser test ran over {BROWSER_DEADLINE:?}:\n{stdout}\n{stderr}"));
    assert!(status.success(), "the browser test failed ({status}):\n{stdout}\n{stderr}");
    for line in [
        "a TCP publish showed in the watch pane",
        "the form's publish reached the TCP subscriber",
        "the value stored over HTTP is listed",
        "all checks passed",
    ] {
        assert!(stdout.contains(line), "the browser test did not report {line:?}:\n{stdout}\n{stderr}");
    }
    for screenshot in ["ui-screenshot.png", "ui-screenshot-phone.png"] {
        let path = screenshots.join(screenshot);
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "{} is a PNG", path.display());
    }
    stdout
}

/// The deliveries `watcher` gets within [`WAIT`] until it has one on
/// `topic`, which it returns as (payload, sender).
fn delivery_on(watcher: &mut RawClient, topic: &str) -> (String, String) {
    loop {
        match watcher.next_within(WAIT) {
            Next::Frame(frame) if frame.topic == topic => {
                return (String::from_utf8(frame.payload).expect("UTF-8"), frame.client_id);
            }
            Next::Frame(_) => {}
            other => panic!("no delivery on {topic} for the watcher: {other:?}"),
        }
    }
}

#[test]
fn the_page_shows_the_broker_live_and_publishes_in_a_real_browser() {
    // With a bridge to nowhere: the page shows it down.
    let nowhere = format!("nats://{}", crate::support::free_address());
    let broker = BrokerProcess::start_http(&["--bridge", &nowhere, "--bridge-out", "bridged/#"]);
    let run = "anon";
    let mut watcher = broker.connect("rust-watcher");
    watcher.subscribe(&format!("ui-test-{run}/#"));

    // target/ui-screenshot.png, the one the README names.
    let said = run_browser_test(&broker, run, "", &["--bridge", "down"]);
    assert!(said.contains("bridge 0 is shown down: nats"), "{said}");

    // What the page and the script published reached a subscriber that is
    // none of theirs, with the senders the broker stamps.
    let (payload, from) = delivery_on(&mut watcher, &format!("ui-test-{run}/tcp"));
    assert_eq!((payload.as_str(), from.as_str()), (format!("over tcp <b>{run}</b>").as_str(), "ui-pub-anon"));
    let (payload, from) = delivery_on(&mut watcher, &format!("ui-test-{run}/form"));
    assert_eq!((payload.as_str(), from.as_str()), (format!("from the form {run}").as_str(), "web-ui"));
    let (payload, _) = delivery_on(&mut watcher, &format!("ui-test-{run}/kitchen/temperature"));
    assert_eq!(payload, format!("21.5 {run}"));
}

#[test]
fn without_anonymous_access_an_admin_logs_in_and_the_page_works() {
    let data = crate::support::ScratchDir::new();
    add_user(data.path(), "root", "admin secret", true);
    let data_flag = data.path().to_str().expect("UTF-8 path");
    let broker = BrokerProcess::start_http(&["--data", data_flag, "--allow-anonymous", "false"]);
    let run = "admin";
    // The admin's namespace: what the page shows and publishes is there.
    let mut watcher = broker.connect_as("rust-watcher", "root", "admin secret");
    watcher.subscribe(&format!("ui-test-{run}/#"));

    // The page's fetches and its EventSource carry the credentials the
    // browser was asked for on `/`: the script fails on any 401.
    let said = run_browser_test(&broker, run, "ui-admin", &["--user", "root", "--password", "admin secret"]);
    assert!(said.contains("no bridges card on a broker without bridges"), "{said}");

    let (payload, from) = delivery_on(&mut watcher, &format!("ui-test-{run}/form"));
    assert_eq!((payload.as_str(), from.as_str()), (format!("from the form {run}").as_str(), "web-ui"));
}
