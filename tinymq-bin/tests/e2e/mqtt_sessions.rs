//! MQTT sessions that outlive their connections, with real clients only:
//! paho-mqtt 2 (`tests/clients/paho_session.py`, one step per run) and
//! `mosquitto_sub -c` / `mosquitto_pub -q 1`, against the real binary with
//! a real redb store: Session Present, messages queued while the client
//! is away, resends with DUP, a broker killed with SIGKILL and restarted on
//! the same data directory, MQTT 5 expiry, and Clean Session discarding a
//! stored session.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::support::mqtt::wait_listening;
use crate::support::tools::{client_script, python_with_requests, require_tool};
use crate::support::{BrokerProcess, ScratchDir, free_address, run_tinymq};

/// tinymq with an MQTT listener on `mqtt`, its store in `data` (the same
/// directory makes a restart) and `extra` flags.
fn start(data: &ScratchDir, mqtt: SocketAddr, extra: &[&str]) -> BrokerProcess {
    let dir = data.path().to_str().expect("a UTF-8 path");
    let mqtt_flag = mqtt.to_string();
    let mut flags = vec!["--data", dir, "--mqtt", mqtt_flag.as_str()];
    flags.extend_from_slice(extra);
    let broker = BrokerProcess::start_http(&flags);
    wait_listening(mqtt, "tinymq's MQTT listener");
    broker
}

/// One step of `paho_session.py` against `mqtt` in MQTT `version`; its
/// output lines, asserting it succeeded.
fn paho(mqtt: SocketAddr, version: &str, args: &[&str]) -> Vec<String> {
    let output = paho_command(mqtt, version, args).output().expect("run paho_session.py");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "paho_session.py {version} {args:?}: {stdout}{stderr}");
    stdout.lines().map(str::to_owned).collect()
}

fn paho_command(mqtt: SocketAddr, version: &str, args: &[&str]) -> Command {
    let mut command = python_with_requests();
    command.arg(client_script("paho_session.py")).args(["127.0.0.1", &mqtt.port().to_string(), version]).args(args);
    command
}

/// The `msg PAYLOAD DUP` lines of a `receive` step, as (payload, dup).
fn messages(lines: &[String]) -> Vec<(String, bool)> {
    lines
        .iter()
        .filter_map(|line| line.strip_prefix("msg "))
        .map(|rest| {
            let (payload, dup) = rest.rsplit_once(' ').expect("msg PAYLOAD DUP");
            (payload.to_owned(), dup == "1")
        })
        .collect()
}

fn numbers(range: std::ops::Range<u32>) -> Vec<String> {
    range.map(|n| n.to_string()).collect()
}

#[test]
fn a_persistent_session_keeps_what_came_while_away_and_resends_the_unacknowledged_with_dup() {
    let data = ScratchDir::new();
    let mqtt = free_address();
    let _broker = start(&data, mqtt, &[]);
    for (version, expiry) in [("311", "0"), ("5", "600")] {
        let client = format!("keeper-{version}");
        let topic = format!("away/{version}");
        let opened = paho(mqtt, version, &["open", &client, "keep", expiry, "away/#"]);
        assert_eq!(opened[0].split(' ').take(2).collect::<Vec<_>>(), ["present", "0"], "{opened:?}");
        assert_eq!(opened[1], "subscribed 1");
        // Published while the subscriber is away, each acknowledged.
        let acked = paho(mqtt, version, &["publish", &topic, "6"]);
        assert_eq!(acked.last().map(String::as_str), Some("acked 5"), "{acked:?}");
        // Back: the session is resumed, the messages come in order. The
        // client acknowledges none and drops the connection.
        let first = paho(mqtt, version, &["receive", &client, expiry, "3", "noack"]);
        assert!(first[0].starts_with("present 1"), "v{version}: {first:?}");
        let expected: Vec<(String, bool)> = numbers(0..3).into_iter().map(|n| (n, false)).collect();
        assert_eq!(messages(&first), expected, "v{version}");
        // Back again: everything not acknowledged, in order, the ones sent
        // before marked DUP first.
        let second = paho(mqtt, version, &["receive", &client, expiry, "6"]);
        assert!(second[0].starts_with("present 1"), "v{version}: {second:?}");
        let got = messages(&second);
        assert_eq!(got.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>(), numbers(0..6), "v{version}");
        assert!(got[..3].iter().all(|(_, dup)| *dup), "v{version}: resends carry DUP: {got:?}");
        // Acknowledged now: a third visit finds the session and nothing
        // waiting, and a new message still reaches it.
        let third = paho_command(mqtt, version, &["receive", &client, expiry, "1"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("run paho_session.py");
        let after = paho(mqtt, version, &["publish", &topic, "1"]);
        assert_eq!(after, ["present 0 expiry -", "acked 0"]);
        let output = third.wait_with_output().expect("paho_session.py receive");
        let third: Vec<String> = String::from_utf8_lossy(&output.stdout).lines().map(str::to_owned).collect();
        assert!(output.status.success(), "{third:?}");
        assert_eq!(messages(&third), [("0".to_owned(), false)], "v{version}: {third:?}");
    }
}

#[test]
fn clean_session_discards_a_stored_session_in_both_versions() {
    let data = ScratchDir::new();
    let mqtt = free_address();
    let _broker = start(&data, mqtt, &[]);
    for (version, expiry) in [("311", "0"), ("5", "600")] {
        let client = format!("cleaned-{version}");
        paho(mqtt, version, &["open", &client, "keep", expiry, "gone/#"]);
        let resumed = paho(mqtt, version, &["open", &client, "keep", expiry]);
        assert!(resumed[0].starts_with("present 1"), "v{version}: {resumed:?}");
        // Clean Session 1 (3.1.1), Clean Start 1 without expiry (5).
        let clean = paho(mqtt, version, &["open", &client, "clean", "0"]);
        assert!(clean[0].starts_with("present 0"), "v{version}: {clean:?}");
        // Nothing was kept, by the stored session or the clean one.
        let after = paho(mqtt, version, &["open", &client, "keep", expiry]);
        assert!(after[0].starts_with("present 0"), "v{version}: {after:?}");
    }
    // MQTT 5 Clean Start with an expiry: a new session, kept after.
    paho(mqtt, "5", &["open", "restarted", "keep", "600", "x/#"]);
    let fresh = paho(mqtt, "5", &["open", "restarted", "clean", "600"]);
    assert!(fresh[0].starts_with("present 0"), "{fresh:?}");
    let kept = paho(mqtt, "5", &["open", "restarted", "keep", "600"]);
    assert!(kept[0].starts_with("present 1"), "{kept:?}");
}

#[test]
fn mqtt_5_session_expiry_is_capped_by_the_broker_and_honoured() {
    let data = ScratchDir::new();
    let mqtt = free_address();
    let broker = start(&data, mqtt, &["--session-expiry", "5", "--log-level", "debug"]);
    // Asked for an hour: CONNACK says the broker's most.
    let opened = paho(mqtt, "5", &["open", "brief", "keep", "3600", "e/#"]);
    assert_eq!(opened[0], "present 0 expiry 5");
    // Asked for 1 s: granted as asked, so CONNACK says nothing of it.
    let resumed = paho(mqtt, "5", &["open", "brief", "keep", "1"]);
    assert_eq!(resumed[0], "present 1 expiry -");
    // Gone for more than 1 s: the broker (looking once a second) ends it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !broker.log().iter().any(|line| line.contains("1 sessions expired")) {
        assert!(Instant::now() < deadline, "no session expired within 10 s: {:?}", broker.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let after = paho(mqtt, "5", &["open", "brief", "keep", "600"]);
    assert!(after[0].starts_with("present 0"), "{after:?}");
}

#[test]
fn every_puback_ed_message_survives_kill_9_under_immediate_durability() {
    let data = ScratchDir::new();
    let mqtt = free_address();
    let mut broker = start(&data, mqtt, &["--durability", "immediate"]);
    paho(mqtt, "311", &["open", "survivor", "keep", "0", "crash/#"]);
    // A publisher streams QoS 1 messages; the broker is killed midway.
    let mut publisher = paho_command(mqtt, "311", &["publish", "crash/t", "100000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run paho_session.py");
    let (lines, acks) = mpsc::channel();
    let stdout = publisher.stdout.take().expect("piped stdout");
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(n) = line.strip_prefix("acked ") {
                let _ = lines.send(n.parse::<u32>().expect("acked N"));
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut acked = 0;
    while acked < 300 {
        let left = deadline.saturating_duration_since(Instant::now());
        let n = acks.recv_timeout(left).expect("300 PUBACKs within 30 s");
        assert_eq!(n, acked, "PUBACKs in order");
        acked += 1;
    }
    broker.kill();
    // Everything the publisher printed came before the kill.
    let _ = publisher.kill();
    let _ = publisher.wait();
    reader.join().expect("reader");
    acked += acks.try_iter().count() as u32;
    let _broker = start(&data, mqtt, &["--durability", "immediate"]);
    let count = acked.to_string();
    let received = paho(mqtt, "311", &["receive", "survivor", "0", &count]);
    assert!(received[0].starts_with("present 1"), "{:?}", &received[..1]);
    let got: Vec<String> = messages(&received).into_iter().map(|(payload, _)| payload).collect();
    assert_eq!(got, numbers(0..acked), "every acknowledged message, in order");
}

#[test]
fn mosquitto_clients_resume_a_session_with_dash_c() {
    let sub = require_tool("mosquitto_sub", "mosquitto-clients");
    let publish = require_tool("mosquitto_pub", "mosquitto-clients");
    let data = ScratchDir::new();
    let mqtt = free_address();
    let _broker = start(&data, mqtt, &["--durability", "immediate"]);
    let port = mqtt.port().to_string();
    let base = ["-h", "127.0.0.1", "-p", &port, "-q", "1"];
    // Subscribe with a kept session (-c) and leave once SUBACK came (-E).
    let subscribed = Command::new(&sub).args(base).args(["-c", "-i", "mosq-keeper", "-t", "mq/#", "-E"]).output();
    assert!(subscribed.expect("run mosquitto_sub").status.success());
    for n in 0..3 {
        let message = format!("m{n}");
        let sent = Command::new(&publish).args(base).args(["-t", "mq/x", "-m", &message]).output();
        assert!(sent.expect("run mosquitto_pub").status.success());
    }
    // Back: the three wait, in order.
    let resumed = Command::new(&sub)
        .args(base)
        .args(["-c", "-i", "mosq-keeper", "-t", "mq/#", "-C", "3", "-W", "10", "-F", "%t %q %p"])
        .output()
        .expect("run mosquitto_sub");
    let stdout = String::from_utf8_lossy(&resumed.stdout);
    assert!(resumed.status.success(), "{stdout}{}", String::from_utf8_lossy(&resumed.stderr));
    assert_eq!(stdout.lines().collect::<Vec<_>>(), ["mq/x 1 m0", "mq/x 1 m1", "mq/x 1 m2"]);
}

#[test]
fn an_mqtt_client_and_a_binary_client_with_one_id_share_one_session() {
    let data = ScratchDir::new();
    let mqtt = free_address();
    let broker = start(&data, mqtt, &["--durability", "immediate"]);
    let binary = broker.tcp_addr().to_string();
    let publish = |message: &str| {
        let output =
            run_tinymq(&["pub", "--address", &binary, "--qos", "1", "--topic", "both/x", "--message", message]);
        assert!(output.status.success(), "{output:?}");
    };
    // The session is made over MQTT, a message queued in it...
    paho(mqtt, "311", &["open", "shared", "keep", "0", "both/#"]);
    publish("m1");
    // ...and taken by a binary client resuming it.
    let output = run_tinymq(&[
        "sub",
        "--address",
        &binary,
        "--topic",
        "both/#",
        "--qos",
        "1",
        "--session",
        "--client-id",
        "shared",
        "--count",
        "1",
    ]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "both/x m1");
    // The other way: queued while the binary client is away, taken over
    // MQTT, where the session is still present.
    publish("m2");
    let received = paho(mqtt, "311", &["receive", "shared", "0", "1"]);
    assert!(received[0].starts_with("present 1"), "{received:?}");
    assert_eq!(messages(&received), [("m2".to_owned(), false)]);
}
