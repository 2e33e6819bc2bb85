//! Bridges with credentials and TLS to the far side, against a real
//! `nats-server` (`--user/--pass`, `--auth`, `--tls` with a certificate
//! made by the test) and a real `mosquitto` (a password file, a TLS
//! listener): the right secrets connect and deliver, wrong ones leave the
//! bridge down with the server's reason shown.

use std::net::SocketAddr;
use std::process::Command;

use crate::bridge::{bridge_stats, wait_connected};
use crate::support::http::{Json, JsonExt, eventually, post};
use crate::support::mosquitto::{Mosquitto, SubMessage};
use crate::support::nats::NatsServer;
use crate::support::tools::require_tool;
use crate::support::{BrokerProcess, ScratchDir, TestPki, WAIT, free_address};

pub(crate) fn bridged(url: &str, id: &str, flags: &[&str]) -> BrokerProcess {
    let mut args = vec!["--bridge", url, "--broker-id", id, "--sys-interval", "0"];
    args.extend_from_slice(flags);
    BrokerProcess::start_http(&args)
}

/// Waits until the bridge's last error contains `words`, and checks that
/// it is down.
pub(crate) fn wait_refused(broker: &BrokerProcess, words: &str) -> Json {
    eventually(WAIT * 2, &format!("the bridge's last error says {words:?}"), || {
        let bridge = bridge_stats(broker);
        let error = bridge.field("last_error");
        (error.as_str().is_some_and(|e| e.to_lowercase().contains(&words.to_lowercase()))).then_some(bridge)
    })
}

/// A message posted on `from` (bridging `out`) reaches a subscriber on `to`
/// (bridging `in`): both bridges up, through the server.
pub(crate) fn assert_delivery(from: &BrokerProcess, to: &BrokerProcess) {
    let mut subscriber = to.connect("on-to");
    subscriber.subscribe("s/#");
    wait_connected(from);
    wait_connected(to);
    post(from.http_addr(), "s/t", "through", "poster");
    let got = subscriber.recv_publish();
    assert_eq!((got.topic.as_str(), got.payload.as_slice()), ("s/t", &b"through"[..]));
}

#[test]
fn nats_user_and_password_from_the_url_connect_and_a_wrong_password_is_refused() {
    let nats = NatsServer::start_with(&["--user", "bridge", "--pass", "s3cret"]);
    let with = |secret: &str| nats.url().replace("nats://", &format!("nats://bridge:{secret}@"));
    let a = bridged(&with("s3cret"), "A", &["--bridge-out", "s/#"]);
    let b = bridged(&with("s3cret"), "B", &["--bridge-in", "s/#"]);
    assert_delivery(&a, &b);
    // STATS and the log show the server, never the password.
    let stats = bridge_stats(&a);
    assert_eq!(stats.field("servers").items(), [Json::String(nats.url())], "{stats}");
    assert!(!a.log().iter().any(|line| line.contains("s3cret")), "the password in the log: {:?}", a.log());

    let wrong = bridged(&with("wrong"), "C", &["--bridge-out", "s/#"]);
    let stats = wait_refused(&wrong, "authorization violation");
    assert_eq!(stats.field("connected"), &Json::Bool(false), "{stats}");
}

#[test]
fn a_nats_token_from_the_config_file_connects() {
    let nats = NatsServer::start_with(&["--auth", "t0ken"]);
    let dir = ScratchDir::new();
    let file = dir.path().join("tinymq.toml");
    let table =
        format!("[[bridge]]\nservers = [\"{}\"]\nout = [\"s/#\"]\nbroker_id = \"A\"\ntoken = \"t0ken\"\n", nats.url());
    std::fs::write(&file, table).unwrap();
    let a = BrokerProcess::start_http(&["--config", file.to_str().unwrap(), "--sys-interval", "0"]);
    let token_url = nats.url().replace("nats://", "nats://t0ken@");
    let b = bridged(&token_url, "B", &["--bridge-in", "s/#"]);
    assert_delivery(&a, &b);
    let none = bridged(&nats.url(), "C", &["--bridge-in", "s/#"]);
    wait_refused(&none, "authorization violation");
}

#[test]
fn nats_over_tls_checks_the_servers_certificate_against_the_ca() {
    let pki = TestPki::generate();
    let tls = ["--tls", "--tlscert", TestPki::arg(&pki.cert), "--tlskey", TestPki::arg(&pki.key)];
    let nats = NatsServer::start_with(&tls);
    let url = nats.url().replace("nats://", "tls://");
    let ca = TestPki::arg(&pki.ca);
    let a = bridged(&url, "A", &["--bridge-out", "s/#", "--bridge-ca", ca]);
    let b = bridged(&url, "B", &["--bridge-in", "s/#", "--bridge-ca", ca]);
    assert_delivery(&a, &b);

    // A CA that did not issue the server's certificate: no connection.
    let other = bridged(&url, "C", &["--bridge-out", "s/#", "--bridge-ca", TestPki::arg(&pki.other_ca)]);
    let stats = wait_refused(&other, "certificate");
    assert_eq!(stats.field("connected"), &Json::Bool(false), "{stats}");
    // Without TLS, a server that requires it is refused, and said so.
    let plain = bridged(&nats.url(), "D", &["--bridge-out", "s/#"]);
    wait_refused(&plain, "requires TLS");
}

/// A mosquitto with a plain listener for its own clients, a TLS listener
/// for the bridge, and user `bridge` with password `s3cret`.
fn secure_mosquitto(pki: &TestPki, dir: &ScratchDir) -> (Mosquitto, SocketAddr) {
    let passwords = dir.path().join("passwords");
    let passwd = require_tool("mosquitto_passwd", "apt-get install mosquitto");
    let status = Command::new(passwd).arg("-c").arg("-b").arg(&passwords).args(["bridge", "s3cret"]).status();
    assert!(status.expect("run mosquitto_passwd").success(), "mosquitto_passwd failed");
    let tls = free_address();
    let extra = format!(
        "password_file {}\nlistener {} {}\ncafile {}\ncertfile {}\nkeyfile {}\n",
        passwords.display(),
        tls.port(),
        tls.ip(),
        pki.ca.display(),
        pki.cert.display(),
        pki.key.display()
    );
    (Mosquitto::start_with(free_address(), &extra), tls)
}

#[test]
fn mqtt_over_tls_with_a_user_name_and_password_reaches_mosquitto() {
    let pki = TestPki::generate();
    let dir = ScratchDir::new();
    let (mosquitto, tls) = secure_mosquitto(&pki, &dir);
    let ca = TestPki::arg(&pki.ca);
    let a = bridged(&format!("mqtts://bridge:s3cret@{tls}"), "A", &["--bridge-out", "s/#", "--bridge-ca", ca]);
    wait_connected(&a);
    mosquitto.wait_log(&["New client connected", "as tinymq-bridge-A (p5,", "u'bridge'"]);
    let mut far = mosquitto.subscribe("far", "s/#");
    a.connect("pub").publish("s/t", b"over TLS");
    assert_eq!(far.recv(), SubMessage { topic: "s/t".into(), retain: false, payload: b"over TLS".to_vec() });

    let wrong = bridged(&format!("mqtts://bridge:wrong@{tls}"), "B", &["--bridge-out", "s/#", "--bridge-ca", ca]);
    // MQTT 5's "not authorized" (0x87) or "bad user name or password" (0x86).
    let stats = wait_refused(&wrong, "refused the connection: code 0x8");
    assert_eq!(stats.field("connected"), &Json::Bool(false), "{stats}");
    let untrusted = bridged(
        &format!("mqtts://bridge:s3cret@{tls}"),
        "C",
        &["--bridge-out", "s/#", "--bridge-ca", TestPki::arg(&pki.other_ca)],
    );
    wait_refused(&untrusted, "certificate");
}
