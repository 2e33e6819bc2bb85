//! The QoS 1 MQTT bridge's out-queue is stored: what a local QoS 1
//! publisher was acknowledged (under `--durability immediate`) reaches
//! the far side after tinymq is killed with SIGKILL and restarted on the
//! same store, with the real binary and Debian's real `mosquitto`, which
//! is not even running while tinymq takes the messages. Duplicates (at
//! least once) are counted, never a loss.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tinymq_net::{Address, ClientOptions};

use crate::bridge::{bridge_stats, figure, wait_connected};
use crate::support::http::eventually;
use crate::support::mosquitto::Mosquitto;
use crate::support::{BrokerProcess, Endpoint, ScratchDir, WAIT, free_address};

/// How long a whole run may take on a loaded machine.
const RUN_DEADLINE: Duration = Duration::from_secs(120);

/// A tinymq on `address` (HTTP on `http`) with its store in `data`,
/// bridging `up/#` out at QoS 1 to `far` under `durability`. A restart
/// can meet the ports briefly held: tried again until the deadline.
fn bridged_out(
    address: SocketAddr,
    http: SocketAddr,
    data: &ScratchDir,
    far: SocketAddr,
    durability: &str,
) -> BrokerProcess {
    let (dir, url, http) = (data.path().to_str().expect("a UTF-8 path"), format!("mqtt://{far}"), http.to_string());
    let flags = ["--data", dir, "--durability", durability, "--bridge", &url, "--bridge-out", "up/#"];
    let flags =
        [&flags[..], &["--bridge-qos", "1", "--broker-id", "A", "--sys-interval", "0", "--http", &http]].concat();
    BrokerProcess::restart_at(address, &flags)
}

/// Publishes `numbers` at QoS 1 to `up/n` and waits for every PubAck.
fn publish_acknowledged(address: SocketAddr, numbers: std::ops::Range<u64>) {
    let mut publisher = ClientOptions::new(Address::tcp(address.to_string())).connect().expect("publisher connects");
    for n in numbers {
        publisher.publish_qos1("up/n", n.to_string().as_bytes(), false).expect("QoS 1 publish");
    }
    assert_eq!(publisher.wait_acknowledged(WAIT * 4).expect("acknowledged"), 0, "every PubAck came");
}

#[test]
fn acknowledged_qos_1_messages_for_the_bridge_survive_a_kill_9_of_tinymq() {
    const N: u64 = 500;
    const MORE: u64 = 100;
    /// Published at QoS 0 last: bridged at QoS 1, queued all the same.
    const LIVE: u64 = 50;
    const ALL: u64 = N + MORE + LIVE;
    let deadline = Instant::now() + RUN_DEADLINE;
    let data = ScratchDir::new();
    let (address, http, far) = (free_address(), free_address(), free_address());

    // Mosquitto is not running: the bridge is down and holds everything.
    let mut a = bridged_out(address, http, &data, far, "immediate");
    publish_acknowledged(address, 0..N);
    let stats = bridge_stats(&a);
    assert_eq!(
        (figure(&stats, "queued"), figure(&stats, "messages_out"), figure(&stats, "drops")),
        (N, 0, 0),
        "all held: {stats}"
    );
    a.kill();

    // Mosquitto starts, with a persistent QoS 1 subscriber; tinymq comes
    // back on its store, and more is published as it connects.
    let mosquitto = Mosquitto::start_at(far);
    let mut sub = mosquitto.subscribe_with("far-d", "up/#", &["-c", "-q", "1"]);
    let a = bridged_out(address, http, &data, far, "immediate");
    publish_acknowledged(address, N..N + MORE);
    let mut live = a.connect("live");
    for n in N + MORE..ALL {
        live.publish("up/n", n.to_string().as_bytes());
    }
    wait_connected(&a);

    // Every one arrives, the kept ones first, in order.
    let (mut seen, mut duplicates, mut last) = (HashSet::new(), 0, None);
    while (seen.len() as u64) < ALL {
        assert!(Instant::now() < deadline, "only {} of {ALL} messages reached mosquitto_sub", seen.len());
        let Some(message) = sub.next_within(Duration::from_millis(500)) else { continue };
        let number: u64 = String::from_utf8(message.payload).unwrap().parse().expect("a number");
        assert!(number < ALL, "{number}: never published");
        if !seen.insert(number) {
            duplicates += 1;
            continue;
        }
        assert!(last.is_none_or(|last| number > last), "{number} after {last:?}: first deliveries in order");
        last = Some(number);
    }
    let stats = eventually(WAIT, "the queue emptied", || {
        let stats = bridge_stats(&a);
        (figure(&stats, "queued") == 0).then_some(stats)
    });
    assert_eq!(figure(&stats, "drops"), 0, "{stats}");
    assert_eq!(figure(&stats, "messages_out"), ALL, "each sent once by this run: {stats}");
    eprintln!("{N} messages held through a kill -9 of tinymq, {} after: 0 lost, {duplicates} duplicates", MORE + LIVE);
}

#[test]
fn over_the_bridge_queue_the_newest_are_dropped_and_counted_and_the_rest_kept() {
    const LIMIT: u64 = 50;
    let data = ScratchDir::new();
    let (address, http, far) = (free_address(), free_address(), free_address());
    let dir = data.path().to_str().expect("a UTF-8 path").to_owned();
    let url = format!("mqtt://{far}");
    let (http_text, limit) = (http.to_string(), LIMIT.to_string());
    let flags = [
        "--data",
        &dir,
        "--durability",
        "immediate",
        "--bridge",
        &url,
        "--bridge-out",
        "up/#",
        "--bridge-qos",
        "1",
        "--bridge-queue",
        &limit,
        "--broker-id",
        "A",
        "--sys-interval",
        "0",
        "--http",
        &http_text,
    ];
    let mut a = BrokerProcess::start_at(Endpoint::Tcp(address), &flags).expect("tinymq starts");
    // The bound is the queue plus the window (64) of what would be in
    // flight: 50 + 64 held, the rest dropped.
    publish_acknowledged(address, 0..200);
    let stats = bridge_stats(&a);
    assert_eq!((figure(&stats, "queued"), figure(&stats, "drops")), (LIMIT + 64, 200 - LIMIT - 64), "{stats}");
    a.kill();

    let mosquitto = Mosquitto::start_at(far);
    let mut sub = mosquitto.subscribe_with("far-q", "up/#", &["-c", "-q", "1"]);
    let a = BrokerProcess::start_at(Endpoint::Tcp(address), &flags).expect("tinymq starts again");
    wait_connected(&a);
    let mut seen = HashSet::new();
    let deadline = Instant::now() + RUN_DEADLINE;
    while (seen.len() as u64) < LIMIT + 64 {
        assert!(Instant::now() < deadline, "only {} kept messages reached mosquitto_sub", seen.len());
        let Some(message) = sub.next_within(Duration::from_millis(500)) else { continue };
        let number: u64 = String::from_utf8(message.payload).unwrap().parse().expect("a number");
        assert!(number < LIMIT + 64, "{number} was dropped, not kept");
        seen.insert(number);
    }
}

#[test]
fn under_batched_a_clean_stop_keeps_the_bridges_queue_for_the_next_start() {
    const N: u64 = 300;
    let deadline = Instant::now() + RUN_DEADLINE;
    let data = ScratchDir::new();
    let (address, http, far) = (free_address(), free_address(), free_address());
    // `batched` acknowledges once queued; the write follows within the
    // interval, and a clean stop commits what it was given.
    let mut a = bridged_out(address, http, &data, far, "batched");
    publish_acknowledged(address, 0..N);
    assert_eq!(figure(&bridge_stats(&a), "queued"), N);
    a.stop();
    assert!(
        a.log().iter().any(|line| line.contains(&format!("{N} messages not acknowledged")) && line.contains("kept")),
        "the stop says what is kept: {:?}",
        a.log()
    );

    let mosquitto = Mosquitto::start_at(far);
    let mut sub = mosquitto.subscribe_with("far-b", "up/#", &["-c", "-q", "1"]);
    let a = bridged_out(address, http, &data, far, "batched");
    eventually(WAIT, "what was kept shown as queued or sent", || {
        let stats = bridge_stats(&a);
        (figure(&stats, "queued") + figure(&stats, "messages_out") == N).then_some(())
    });
    let mut seen = HashSet::new();
    while (seen.len() as u64) < N {
        assert!(Instant::now() < deadline, "only {} of {N} messages reached mosquitto_sub", seen.len());
        let Some(message) = sub.next_within(Duration::from_millis(500)) else { continue };
        let number: u64 = String::from_utf8(message.payload).unwrap().parse().expect("a number");
        seen.insert(number);
    }
}

#[test]
fn a_kept_retained_publish_is_still_retained_on_the_far_side_after_a_kill_9() {
    let data = ScratchDir::new();
    let (address, http, far) = (free_address(), free_address(), free_address());
    // Mosquitto is not running: the retained publish is held, and stored.
    let mut a = bridged_out(address, http, &data, far, "immediate");
    let mut publisher = ClientOptions::new(Address::tcp(address.to_string())).connect().expect("publisher connects");
    publisher.publish_qos1("up/value", b"21", true).expect("QoS 1 publish");
    assert_eq!(publisher.wait_acknowledged(WAIT * 4).expect("acknowledged"), 0, "the PubAck came");
    assert_eq!(figure(&bridge_stats(&a), "queued"), 1);
    a.kill();

    let mosquitto = Mosquitto::start_at(far);
    let a = bridged_out(address, http, &data, far, "immediate");
    wait_connected(&a);
    eventually(WAIT, "the kept message sent and acknowledged", || {
        let stats = bridge_stats(&a);
        (figure(&stats, "queued") == 0 && figure(&stats, "messages_out") == 1).then_some(())
    });
    // Mosquitto stored it as the topic's value: a subscriber that comes
    // only now gets it, marked retained.
    let mut late = mosquitto.subscribe_with("late", "up/value", &["-q", "1"]);
    let message = late.recv();
    assert_eq!((message.topic.as_str(), message.retain, &message.payload[..]), ("up/value", true, &b"21"[..]));
}
