//! What is queued for a Moustique client's PICKUP survives the broker: a
//! kill -9 of the real binary under `--durability immediate` loses no
//! message whose publisher was answered (a POST's 200, a binary QoS 1
//! PubAck), and brings back none a PICKUP handed out; a clean stop under
//! `batched` keeps the whole queue; a will published at the restart is
//! queued behind what was restored. Subscribing and the PICKUPs after the
//! restart go through the real Moustique Python client from PyPI
//! (tests/clients/real_pickup.py); the load and the PICKUPs under it are
//! raw HTTP and our binary client.

use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tinymq_net::{Address, ClientOptions};

use crate::support::http::{
    HttpConn, Json, JsonExt, Next, client_script, eventually, moustique_json, moustique_request, pickup,
    python_with_requests, run_checked,
};
use crate::support::{BrokerProcess, ScratchDir, WAIT};

/// How long a client script may run.
const SCRIPT_DEADLINE: Duration = Duration::from_secs(60);

/// Runs tests/clients/real_pickup.py with `args` after the broker's
/// address and `client`; returns the message objects it printed.
fn real_client(broker: &BrokerProcess, client: &str, args: &[&str]) -> Vec<Json> {
    let mut command: Command = python_with_requests();
    command
        .arg(client_script("real_pickup.py"))
        .arg("127.0.0.1")
        .arg(broker.http_addr().port().to_string())
        .arg(client)
        .args(args);
    let what = format!("tests/clients/real_pickup.py {client} {}", args.join(" "));
    let output = run_checked(command, SCRIPT_DEADLINE, &what);
    let stdout = String::from_utf8(output.stdout).expect("UTF-8 output");
    let mut lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.pop(), Some("ALL OK"), "{what} did not finish:\n{stdout}");
    lines.iter().map(|line| serde_json::from_str(line).expect("a JSON message object")).collect()
}

/// A message object as (publisher, sequence number): payloads are
/// `http N`, `early N` and `bin N`.
fn numbered(message: &Json) -> (String, u64) {
    let text = message.field("message").str();
    let (kind, n) = text.split_once(' ').unwrap_or_else(|| panic!("unexpected message {message}"));
    (kind.to_owned(), n.parse().unwrap_or_else(|_| panic!("unexpected message {message}")))
}

/// Asserts that `picked` holds each publisher's messages once and in the
/// order published, and every one of `acknowledged` (by publisher: all
/// numbers below the count).
fn assert_complete_and_in_order(picked: &[(String, u64)], acknowledged: &[(&str, u64)]) {
    for &(kind, count) in acknowledged {
        let numbers: Vec<u64> = picked.iter().filter(|(k, _)| k == kind).map(|(_, n)| *n).collect();
        assert!(numbers.windows(2).all(|w| w[0] < w[1]), "{kind}: out of order or twice: {numbers:?}");
        // Numbers are dense: every message up to the last acknowledged one
        // was answered before it (one request in flight per publisher).
        let got = numbers.iter().take_while(|&&n| n < count).count() as u64;
        assert_eq!(got, count, "{kind}: {count} acknowledged, only {got} of them picked up: {numbers:?}");
    }
}

fn binary_options(address: SocketAddr) -> ClientOptions {
    ClientOptions::new(Address::tcp(address.to_string())).client_id("bin-publisher").request_timeout(WAIT)
}

#[test]
fn every_answered_message_queued_for_pickup_survives_kill_9_and_none_picked_comes_back() {
    const HTTP_BEFORE_KILL: u64 = 150;
    const BINARY_BEFORE_KILL: u64 = 100;
    let data = ScratchDir::new();
    let dir = data.path().to_str().expect("a UTF-8 path").to_owned();
    let flags = ["--data", dir.as_str(), "--durability", "immediate"];
    let mut broker = BrokerProcess::start_http(&flags);
    assert!(real_client(&broker, "keeper", &["subscribe", "/pq/#"]).is_empty());
    let (http, tcp) = (broker.http_addr(), broker.tcp_addr());

    // Picked up before the kill, with its delete committed: never again.
    let mut picked = Vec::new();
    {
        let mut conn = HttpConn::open(http);
        for n in 0..20 {
            let message = format!("early {n}");
            conn.moustique("POST", &[("topic", "/pq/early"), ("message", &message)]).assert_empty_ok("POST");
        }
    }
    picked.extend(pickup(http, "keeper").iter().map(|(_, m)| numbered(m)));
    assert_eq!(picked.len(), 20, "{picked:?}");

    // Two publishers as fast as the broker answers, one request in flight
    // each: POST on a keep-alive connection, QoS 1 on the binary protocol.
    let http_acked = Arc::new(Mutex::new(0u64));
    let poster = {
        let acked = http_acked.clone();
        std::thread::spawn(move || {
            let mut conn = HttpConn::open(http);
            for n in 0.. {
                let message = format!("http {n}");
                let request = moustique_request("POST", "POST", &[("topic", "/pq/http"), ("message", &message)]);
                if conn.try_send(&request).is_err() {
                    return;
                }
                match conn.next_within(WAIT) {
                    Next::Response(response) if response.status == 200 => *acked.lock().unwrap() = n + 1,
                    Next::Response(response) => panic!("POST {n}: {} {}", response.status, response.text()),
                    Next::Closed | Next::Timeout => return,
                }
            }
        })
    };
    let binary_acked = Arc::new(Mutex::new(0u64));
    let publisher = {
        let acked = binary_acked.clone();
        std::thread::spawn(move || {
            let Ok(mut client) = binary_options(tcp).connect() else { return };
            for n in 0.. {
                let sent = client.publish_qos1("/pq/bin", format!("bin {n}").as_bytes(), false);
                if sent.is_err() || !matches!(client.wait_acknowledged(WAIT), Ok(0)) {
                    return;
                }
                *acked.lock().unwrap() = n + 1;
            }
        })
    };
    // PICKUPs under the load: what they hand out must not come back.
    let deadline = Instant::now() + Duration::from_secs(60);
    while *http_acked.lock().unwrap() < HTTP_BEFORE_KILL || *binary_acked.lock().unwrap() < BINARY_BEFORE_KILL {
        assert!(
            Instant::now() < deadline,
            "only {} POSTs and {} QoS 1 publishes answered in 60 s",
            http_acked.lock().unwrap(),
            binary_acked.lock().unwrap()
        );
        picked.extend(pickup(http, "keeper").iter().map(|(_, m)| numbered(m)));
        std::thread::sleep(Duration::from_millis(20));
    }
    let picked_before = picked.len();
    broker.kill();
    poster.join().expect("the poster thread");
    publisher.join().expect("the publisher thread");
    let (http_count, binary_count) = (*http_acked.lock().unwrap(), *binary_acked.lock().unwrap());
    eprintln!("killed with SIGKILL after {http_count} POSTs, {binary_count} QoS 1 publishes answered");

    let broker = BrokerProcess::start_http(&flags);
    let after = real_client(&broker, "keeper", &["pickup"]);
    assert!(!after.is_empty(), "the queue is back");
    for message in &after {
        assert!(message.field("topic").str().starts_with("/pq/"), "{message}");
        assert_eq!(message.field("subscribers"), &serde_json::json!({"keeper": true}), "{message}");
    }
    picked.extend(after.iter().map(numbered));
    assert_complete_and_in_order(&picked, &[("early", 20), ("http", http_count), ("bin", binary_count)]);
    eprintln!("{picked_before} picked up before the kill, {} after it, none twice", after.len());
    assert!(real_client(&broker, "keeper", &["pickup"]).is_empty(), "picked up once");
}

#[test]
fn a_clean_stop_under_batched_durability_keeps_the_whole_queue() {
    let data = ScratchDir::new();
    let dir = data.path().to_str().expect("a UTF-8 path").to_owned();
    let flags = ["--data", dir.as_str(), "--durability", "batched"];
    let mut broker = BrokerProcess::start_http(&flags);
    assert!(real_client(&broker, "stays", &["subscribe", "/cs/#"]).is_empty());
    let http = broker.http_addr();
    let mut conn = HttpConn::open(http);
    for n in 0..60 {
        let message = format!("http {n}");
        conn.moustique("POST", &[("topic", "/cs/http"), ("message", &message), ("from", "poster")])
            .assert_empty_ok("POST");
    }
    let mut client = binary_options(broker.tcp_addr()).connect().expect("the binary publisher connects");
    for n in 0..60 {
        client.publish("/cs/bin", format!("bin {n}").as_bytes(), false).expect("publish");
    }
    client.disconnect().expect("clean disconnect");
    // The binary publishes are not answered: wait until all are queued.
    let queued = || {
        let clients = moustique_json(http, "CLIENTS", &[]);
        let row = clients.items().iter().find(|c| c.field("Name").str() == "stays").cloned();
        row.map(|row| row.field("Queued").num() as u64)
    };
    eventually(WAIT, "120 messages queued for stays", || (queued() == Some(120)).then_some(()));
    // Ten picked up before the stop are gone for good.
    let early: Vec<(String, u64)> = real_client(&broker, "stays", &["pickup"]).iter().map(numbered).collect();
    assert_eq!(early.len(), 120);
    assert_complete_and_in_order(&early, &[("http", 60), ("bin", 60)]);
    for n in 120..130 {
        let message = format!("http {n}");
        conn.moustique("POST", &[("topic", "/cs/http"), ("message", &message)]).assert_empty_ok("POST");
    }
    drop(conn);
    broker.stop();

    let broker = BrokerProcess::start_http(&flags);
    let http = broker.http_addr();
    let after = || {
        let clients = moustique_json(http, "CLIENTS", &[]);
        clients.items().iter().find(|c| c.field("Name").str() == "stays").map(|row| row.field("Queued").num() as u64)
    };
    assert_eq!(after(), Some(10), "CLIENTS shows the restored queue");
    let back = real_client(&broker, "stays", &["pickup"]);
    let numbers: Vec<(String, u64)> = back.iter().map(numbered).collect();
    let expected: Vec<(String, u64)> = (120..130).map(|n| ("http".to_owned(), n)).collect();
    assert_eq!(numbers, expected, "exactly what was queued at the stop, in order");
    assert_eq!(back[0].field("from").str(), "UNKNOWN", "{}", back[0]);
    assert!(real_client(&broker, "stays", &["pickup"]).is_empty(), "picked up once");
}

#[test]
fn a_will_published_at_the_restart_is_queued_behind_what_the_client_had() {
    let data = ScratchDir::new();
    let dir = data.path().to_str().expect("a UTF-8 path").to_owned();
    let flags = ["--data", dir.as_str(), "--durability", "immediate"];
    let mut broker = BrokerProcess::start_http(&flags);
    assert!(real_client(&broker, "watcher", &["subscribe", "/status/#"]).is_empty());
    let mut device = ClientOptions::new(Address::tcp(broker.tcp_addr().to_string()))
        .client_id("dev")
        .persistent_session(true)
        .will("/status/dev", "gone", false, tinymq_net::Qos::AtLeastOnce)
        .reconnect(false)
        .request_timeout(WAIT)
        .connect()
        .expect("the device connects");
    // Acknowledged under `immediate` once its copy in the watcher's queue
    // is committed.
    device.publish_qos1("/status/dev", b"alive", false).expect("publish");
    assert_eq!(device.wait_acknowledged(WAIT).expect("acknowledged"), 0);

    // The device was connected: its will is published when the broker
    // starts again, after the queues are back.
    broker.kill();
    let broker = BrokerProcess::start_http(&flags);
    let picked = real_client(&broker, "watcher", &["pickup"]);
    let texts: Vec<&str> = picked.iter().map(|m| m.field("message").str()).collect();
    assert_eq!(texts, ["alive", "gone"], "{picked:?}");
    drop(device);
}
