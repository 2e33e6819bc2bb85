//! QoS 1 over the MQTT bridge, with the real binary and Debian's real
//! `mosquitto`: out, a mosquitto frozen (SIGSTOP) while the bridge sends,
//! then killed with SIGKILL and restarted on its persistence file, and a
//! persistent `mosquitto_sub -c -q 1` gets every message; in, tinymq
//! killed with SIGKILL while `mosquitto_pub -q 1` publishes, and again
//! while its bridge takes the messages in, and a durable QoS 1 session on
//! the restarted tinymq gets every message. Duplicates (at-least-once
//! resends) are counted, never a loss.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tinymq_net::{Address, ClientOptions};

use crate::bridge::{bridge_stats, figure, wait_connected};
use crate::support::http::eventually;
use crate::support::mosquitto::{Mosquitto, MosquittoSub};
use crate::support::{BrokerProcess, ScratchDir, WAIT, free_address};

/// How long a whole run may take on a loaded machine.
const RUN_DEADLINE: Duration = Duration::from_secs(120);

/// Waits until mosquitto has saved its database after the log line with
/// every one of `words`: a kill -9 from then on keeps what that line did.
fn wait_saved_after(mosquitto: &Mosquitto, words: &[&str]) {
    let deadline = Instant::now() + WAIT * 2;
    loop {
        let log = mosquitto.log();
        if let Some(at) = log.iter().position(|l| words.iter().all(|w| l.contains(w)))
            && log[at..].iter().any(|l| l.contains("Saving in-memory database") && !l.contains("Error"))
        {
            return;
        }
        assert!(Instant::now() < deadline, "mosquitto saved nothing after {words:?}:\n{log:#?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Takes messages from `far` until it has every number below `n`; returns
/// how many were duplicates.
fn receive_all(far: &mut MosquittoSub, seen: &mut HashSet<u64>, n: u64, deadline: Instant) -> u64 {
    let mut duplicates = 0;
    while (seen.len() as u64) < n {
        assert!(Instant::now() < deadline, "only {} of {n} messages reached mosquitto_sub", seen.len());
        let Some(message) = far.next_within(Duration::from_millis(500)) else { continue };
        let number: u64 = String::from_utf8(message.payload).unwrap().parse().expect("a number");
        assert!(number < n, "{number}: never published");
        if !seen.insert(number) {
            duplicates += 1;
        }
    }
    duplicates
}

#[test]
fn qos_1_out_loses_nothing_when_mosquitto_is_killed_mid_stream_and_restarted() {
    const N: u64 = 400;
    let deadline = Instant::now() + RUN_DEADLINE;
    let store = ScratchDir::new();
    let address = free_address();
    let mut mosquitto = Mosquitto::start_persistent(address, store.path());
    let mut far = mosquitto.subscribe_with("far-b", "up/#", &["-c", "-q", "1"]);
    wait_saved_after(&mosquitto, &["Sending SUBACK to", "far-b"]);
    let args = ["--bridge", &mosquitto.url(), "--broker-id", "A", "--sys-interval", "0"];
    let a = BrokerProcess::start_http(&[&args[..], &["--bridge-out", "up/#", "--bridge-qos", "1"]].concat());
    wait_connected(&a);
    let mut publisher = a.connect("pub");

    // The first half crosses while all is well.
    let mut seen = HashSet::new();
    for n in 0..N / 2 {
        publisher.publish("up/n", n.to_string().as_bytes());
    }
    let mut duplicates = receive_all(&mut far, &mut seen, N / 2, deadline);

    // Mosquitto freezes: what the bridge sends now is never read, and no
    // PUBACK comes. The bridge takes the second half all the same: a
    // window's worth in flight, the rest held.
    // SAFETY: a signal to a child process this test owns.
    assert_eq!(unsafe { libc::kill(mosquitto.pid() as i32, libc::SIGSTOP) }, 0);
    for n in N / 2..N {
        publisher.publish("up/n", n.to_string().as_bytes());
    }
    let stats = eventually(WAIT, "the bridge took every message", || {
        let stats = bridge_stats(&a);
        (figure(&stats, "messages_out") + figure(&stats, "queued") == N).then_some(stats)
    });
    assert!(figure(&stats, "queued") > 0, "a full window holds the rest: {stats}");

    // Killed while frozen, restarted on its store: the bridge reconnects
    // and sends what was never acknowledged again, then what it held.
    mosquitto.kill();
    let _mosquitto = Mosquitto::start_persistent(address, store.path());
    duplicates += receive_all(&mut far, &mut seen, N, deadline);
    let stats = eventually(WAIT, "the held messages sent", || {
        let stats = bridge_stats(&a);
        (figure(&stats, "queued") == 0 && figure(&stats, "messages_out") == N).then_some(stats)
    });
    assert_eq!((figure(&stats, "drops"), figure(&stats, "reconnects")), (0, 1), "{stats}");
    eprintln!("{N} messages through a kill -9 of mosquitto: 0 lost, {duplicates} duplicates");
}

/// A tinymq on `address` (and HTTP on `http`) with its store in `data`
/// (commit before acknowledging), bridging `down/#` in at QoS 1 from
/// `mosquitto`. A restart can meet the ports briefly held: tried again
/// until the deadline.
fn bridged_in(address: SocketAddr, http: SocketAddr, data: &ScratchDir, mosquitto: &Mosquitto) -> BrokerProcess {
    let (dir, url, http) = (data.path().to_str().expect("a UTF-8 path"), mosquitto.url(), http.to_string());
    let flags = ["--data", dir, "--durability", "immediate", "--bridge", &url, "--bridge-in", "down/#"];
    let flags =
        [&flags[..], &["--bridge-qos", "1", "--broker-id", "A", "--sys-interval", "0", "--http", &http]].concat();
    BrokerProcess::restart_at(address, &flags)
}

fn keeper(address: SocketAddr) -> tinymq_net::Client {
    ClientOptions::new(Address::tcp(address.to_string()))
        .client_id("keeper")
        .persistent_session(true)
        .reconnect_backoff(Duration::from_millis(20), Duration::from_millis(200))
        .connect()
        .expect("keeper connects")
}

#[test]
fn qos_1_in_reaches_a_durable_session_through_two_kill_9s_of_tinymq() {
    const N: usize = 2000;
    let deadline = Instant::now() + RUN_DEADLINE;
    let mosquitto = Mosquitto::start();
    let data = ScratchDir::new();
    let (address, http) = (free_address(), free_address());
    let mut a = bridged_in(address, http, &data, &mosquitto);
    // A persistent QoS 1 session here, away from now on.
    let mut client = keeper(address);
    client.subscribe_qos1("down/#").expect("QoS 1 subscription");
    client.disconnect().expect("clean disconnect");
    // A QoS 1 message queued for the session is acknowledged under
    // `immediate` once committed, after the session's own writes (its
    // record is written when its connection closes): from then on a
    // kill -9 keeps the session.
    let mut syncer = ClientOptions::new(Address::tcp(address.to_string())).connect().expect("connects");
    syncer.publish_qos1("down/sync", b"", false).expect("publish");
    assert_eq!(syncer.wait_acknowledged(WAIT).expect("acknowledged"), 0);
    mosquitto.wait_log(&["Sending SUBACK to", "tinymq-bridge-A"]);
    assert!(
        mosquitto.log().iter().any(|l| l.contains("tinymq-bridge-A") && l.contains(", c0,")),
        "the bridge's session on mosquitto is persistent (clean start off)"
    );

    // tinymq is killed: the first three quarters wait in the bridge's
    // session on mosquitto.
    a.kill();
    let numbers: Vec<String> = (0..N).map(|n| n.to_string()).collect();
    mosquitto.publish_lines_with("down/n", &numbers[..N * 3 / 4], &["-q", "1"]);
    // Back, it takes them in; killed again part way, with messages routed
    // and not yet committed, committed and not yet acknowledged, and sent
    // by mosquitto and not yet read.
    let mut a = bridged_in(address, http, &data, &mosquitto);
    let taken = eventually(RUN_DEADLINE, "some messages taken in", || {
        let taken = figure(&bridge_stats(&a), "messages_in");
        (taken >= (N / 5) as u64).then_some(taken)
    });
    a.kill();
    eprintln!("killed tinymq with {taken} messages taken in");
    let a = bridged_in(address, http, &data, &mosquitto);
    mosquitto.publish_lines_with("down/n", &numbers[N * 3 / 4..], &["-q", "1"]);

    let mut client = keeper(address);
    assert!(client.session_present(), "the stored session was resumed");
    let (mut next, mut duplicates, mut seen) = (0, 0, HashSet::new());
    while next < N {
        assert!(Instant::now() < deadline, "only {next} of {N} messages delivered");
        let Some(message) = client.recv_timeout(Duration::from_millis(500)).expect("keeper receives") else {
            continue;
        };
        if message.topic == "down/sync" {
            continue;
        }
        assert_eq!(message.topic, "down/n");
        let number: usize = String::from_utf8(message.payload).unwrap().parse().expect("a number");
        if !seen.insert(number) {
            duplicates += 1;
            continue;
        }
        assert_eq!(number, next, "first deliveries in the order mosquitto_pub sent them");
        next += 1;
    }
    // Every message acknowledged to mosquitto: nothing left for the bridge.
    eventually(WAIT, "a PUBACK from the bridge for every message", || {
        let acks = mosquitto.log().iter().filter(|l| l.contains("Received PUBACK from tinymq-bridge-A")).count();
        (acks >= N).then_some(())
    });
    drop(a);
    eprintln!("{N} messages into a durable session through two kill -9s of tinymq: 0 lost, {duplicates} duplicates");
}
