//! Moustique compatibility proven by real third-party clients, not by a
//! client of ours: the real Python client from PyPI (`moustique-client`,
//! pinned in tests/clients/requirements.txt, installed into `target/test-venv` by
//! `tests/run.sh`), anonymous and with a user made by `tinymq user add`,
//! and a curl session encoded with the shell recipe of Moustique's README
//! (the legacy order).

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::http::{client_script, python_with_requests, require_tool, run_checked};
use crate::support::{BrokerProcess, ScratchDir, add_user};

/// How long a client script may run.
const SCRIPT_DEADLINE: Duration = Duration::from_secs(60);

/// Runs a client script to its end; its output must end with `ALL OK`.
fn run_script(command: Command, what: &str) -> String {
    let output = run_checked(command, SCRIPT_DEADLINE, what);
    let stdout = String::from_utf8(output.stdout).expect("UTF-8 output");
    assert!(stdout.lines().any(|l| l == "ALL OK"), "{what} did not finish:\n{stdout}");
    stdout
}

#[test]
fn the_real_python_client_works_anonymously() {
    let broker = BrokerProcess::start_http(&[]);
    let mut command = python_with_requests();
    command.arg(client_script("real_moustique.py")).arg("127.0.0.1").arg(broker.http_addr().port().to_string());
    let stdout = run_script(command, "tests/clients/real_moustique.py");
    assert!(stdout.contains("ok both filters' callbacks fire"), "{stdout}");
}

#[test]
fn the_real_python_client_works_with_a_users_credentials() {
    let data = ScratchDir::new();
    add_user(data.path(), "moustique-user", "s3cret-pass", true);
    let data_flag = data.path().to_str().expect("a UTF-8 path").to_owned();
    let broker = BrokerProcess::start_http(&["--data", &data_flag, "--allow-anonymous", "false"]);
    // A wrong password first, so that CROOKS has this address to show.
    let mut wrong = Command::new(require_tool("curl", "apt-get install curl"));
    wrong.args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5", "--data-urlencode"]);
    wrong.arg(format!("username={}", tinymq_core::http::encoding::encode_value(b"moustique-user", Default::default())));
    wrong.arg("--data-urlencode").arg("password=d3Jvbmc=");
    wrong.arg(format!("{}/STATS", broker.http_url()));
    let status = run_checked(wrong, SCRIPT_DEADLINE, "curl with a wrong password");
    assert_eq!(String::from_utf8_lossy(&status.stdout), "401");

    let mut command = python_with_requests();
    command
        .arg(client_script("real_moustique.py"))
        .arg("127.0.0.1")
        .arg(broker.http_addr().port().to_string())
        .args(["moustique-user", "s3cret-pass"])
        .env("EXPECT_CROOK", "127.0.0.1");
    let stdout = run_script(command, "tests/clients/real_moustique.py with credentials");
    assert!(stdout.contains("ok getcrooks lists the peer that sent bad requests"), "{stdout}");
    assert!(stdout.contains("ok without credentials the client is told"), "{stdout}");
}

#[test]
fn a_curl_session_with_the_legacy_shell_recipe_works() {
    require_tool("curl", "apt-get install curl");
    let broker = BrokerProcess::start_http(&[]);
    let mut command = Command::new("bash");
    command.arg(client_script("legacy_curl.sh")).arg(broker.http_addr().to_string());
    let stdout = run_script(command, "tests/clients/legacy_curl.sh");
    assert!(stdout.contains("ok PICKUP decodes with the README's recipe"), "{stdout}");
}

#[test]
fn a_broker_pinned_to_the_current_order_refuses_the_legacy_one() {
    require_tool("curl", "apt-get install curl");
    let broker = BrokerProcess::start_http(&["--moustique-encoding", "current"]);
    let mut command = Command::new("bash");
    command.arg(client_script("legacy_curl.sh")).arg(broker.http_addr().to_string());
    // Every curl in it has a 5 s limit, so it ends by itself.
    let output = command.stdin(Stdio::null()).output().expect("run bash");
    let stdout = String::from_utf8_lossy(&output.stdout);
    // The legacy values are taken as they are and the answers come in the
    // current order, so the session goes wrong somewhere (which call first
    // depends on the bytes of the raw values).
    assert!(!output.status.success() && stdout.contains("FAIL: "), "{stdout}");
}
