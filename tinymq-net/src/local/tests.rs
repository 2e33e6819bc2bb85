//! In-process clients' durable sessions through the embedding API, with a
//! real redb store where it matters. The kill -9 case is an end-to-end
//! test (`tinymq-bin/tests/e2e/local_qos.rs`): it needs a process to kill.

use std::time::{Duration, Instant};

use crate::{Broker, Durability, LocalOptions, Qos};

const WAIT: Duration = Duration::from_secs(5);

fn broker() -> Broker {
    Broker::builder().threads(1).start().unwrap()
}

fn payloads(client: &crate::LocalClient, count: usize) -> Vec<crate::Received> {
    let deadline = Instant::now() + WAIT;
    let mut got = Vec::new();
    while got.len() < count {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "{} of {count} received", got.len());
        if let Some(message) = client.recv_timeout(left).unwrap() {
            got.push(message);
        }
    }
    got
}

fn texts(messages: &[crate::Received]) -> Vec<&str> {
    messages.iter().map(|m| std::str::from_utf8(m.payload()).unwrap()).collect()
}

#[test]
fn unacknowledged_qos1_messages_come_back_to_the_next_client_with_the_id() {
    let broker = broker();
    let options = LocalOptions::new("worker").persistent_session(true).manual_ack(true);
    let worker = broker.local_client(options.clone()).unwrap();
    assert!(!worker.session_present());
    worker.subscribe_qos1("jobs/#").unwrap();
    let dispatcher = broker.client("dispatcher").unwrap();
    for n in 0..3 {
        dispatcher.publish_qos1("jobs/a", n.to_string().as_bytes()).unwrap();
    }
    let first = payloads(&worker, 3);
    assert_eq!(texts(&first), ["0", "1", "2"]);
    assert!(first.iter().all(|m| m.qos() == Qos::AtLeastOnce && !m.is_duplicate()));
    assert!(worker.ack(&first[0]).unwrap());
    assert!(!worker.ack(&first[0]).unwrap(), "acknowledged once");
    let stats = broker.stats().sessions;
    assert_eq!((stats.queued, stats.inflight, stats.acknowledged), (2, 2, 1));
    drop(worker);
    // Published while it is away: kept.
    dispatcher.publish_qos1("jobs/b", b"3").unwrap();

    let worker = broker.local_client(options).unwrap();
    assert!(worker.session_present());
    let again = payloads(&worker, 3);
    assert_eq!(texts(&again), ["1", "2", "3"], "the unacknowledged ones first, in order, then the new");
    assert!(again[0].is_duplicate() && again[1].is_duplicate() && !again[2].is_duplicate());
    for message in &again {
        assert!(worker.ack(message).unwrap());
    }
    assert_eq!(broker.stats().sessions.resent, 2);
    assert_eq!(worker.recv_timeout(Duration::from_millis(50)).unwrap().map(|m| m.payload().to_vec()), None);
    broker.shutdown();
}

#[test]
fn a_waiting_receiver_is_woken_by_a_qos1_publish_and_qos0_still_flows() {
    let broker = broker();
    let receiver = broker.local_client(LocalOptions::new("rx")).unwrap();
    receiver.subscribe_qos1("q/#").unwrap();
    receiver.subscribe("live").unwrap();
    let publisher = broker.client("tx").unwrap();
    std::thread::scope(|scope| {
        let waiting = scope.spawn(|| receiver.recv_timeout(WAIT).unwrap());
        // The receiver may or may not be asleep yet; either way it gets it.
        std::thread::sleep(Duration::from_millis(20));
        publisher.publish_qos1("q/1", b"one").unwrap();
        let message = waiting.join().unwrap().expect("woken in time");
        assert_eq!((message.payload(), message.qos()), (&b"one"[..], Qos::AtLeastOnce));
    });
    // Acknowledged on receipt: nothing left in flight.
    assert_eq!(broker.stats().sessions.inflight, 0);
    // A QoS 0 publish to a QoS 1 subscription arrives at QoS 0; QoS 0
    // subscriptions are untouched.
    publisher.publish("q/2", b"zero").unwrap();
    publisher.publish("live", b"live").unwrap();
    let mut batch = Vec::new();
    let deadline = Instant::now() + WAIT;
    while batch.len() < 2 && Instant::now() < deadline {
        receiver.recv_batch(&mut batch, Duration::from_millis(100)).unwrap();
    }
    assert_eq!(texts(&batch), ["zero", "live"]);
    assert!(batch.iter().all(|m| m.qos() == Qos::AtMostOnce));
    broker.shutdown();
}

#[test]
fn recv_many_takes_qos1_messages_acknowledging_them() {
    let broker = broker();
    let receiver = broker.local_client(LocalOptions::new("rx").persistent_session(true)).unwrap();
    receiver.subscribe_qos1("q").unwrap();
    let publisher = broker.client("tx").unwrap();
    for n in 0..5 {
        publisher.publish_qos1("q", n.to_string().as_bytes()).unwrap();
    }
    let mut batch = crate::ReceivedBatch::new();
    let mut seen = Vec::new();
    let deadline = Instant::now() + WAIT;
    while seen.len() < 5 && Instant::now() < deadline {
        receiver.recv_many(&mut batch, Duration::from_millis(100)).unwrap();
        seen.extend(batch.iter().map(|m| m.payload().to_vec()));
    }
    assert_eq!(seen, [b"0", b"1", b"2", b"3", b"4"]);
    let stats = broker.stats().sessions;
    assert_eq!((stats.queued, stats.acknowledged), (0, 5));
    broker.shutdown();
}

#[test]
fn a_persistent_session_survives_a_restart_on_the_same_data_dir() {
    let dir = std::env::temp_dir().join(format!("tinymq-local-session-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let start = || Broker::builder().data_dir(&dir).durability(Durability::Immediate).threads(1).start().unwrap();
    let options = LocalOptions::new("svc").persistent_session(true).manual_ack(true);
    let broker = start();
    broker.local_client(options.clone()).unwrap().subscribe_qos1("t").unwrap();
    let publisher = broker.client("pub").unwrap();
    for n in 0..3 {
        // Under `immediate`, returns once committed.
        publisher.publish_qos1("t", n.to_string().as_bytes()).unwrap();
    }
    drop(publisher);
    broker.shutdown();

    let broker = start();
    assert_eq!(broker.stats().sessions.queued, 3, "restored from the store");
    let svc = broker.local_client(options).unwrap();
    assert!(svc.session_present());
    let got = payloads(&svc, 3);
    assert_eq!(texts(&got), ["0", "1", "2"]);
    assert!(got.iter().all(crate::Received::is_duplicate), "restored: whether they were seen is unknown");
    for message in &got {
        svc.ack(message).unwrap();
    }
    drop(svc);
    broker.shutdown();
    let broker = start();
    assert_eq!(broker.stats().sessions.queued, 0, "the acknowledgements were stored too");
    broker.shutdown();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn in_process_and_binary_clients_share_one_client_id_space_for_sessions() {
    let broker = Broker::builder().listen_tcp("127.0.0.1:0".parse().unwrap()).threads(1).start().unwrap();
    let options = || crate::ClientOptions::new(broker.tcp_addr().unwrap()).client_id("dev").persistent_session(true);
    let mut device = options().connect().unwrap();
    device.subscribe_qos1("cmd/#").unwrap();
    device.disconnect().unwrap();
    broker.client("operator").unwrap().publish_qos1("cmd/reboot", b"now").unwrap();
    assert_eq!(broker.stats().sessions.queued, 1, "queued for the binary client while it is away");

    // An in-process client with its id resumes its session.
    let local = broker.local_client(LocalOptions::new("dev").persistent_session(true)).unwrap();
    assert!(local.session_present());
    let message = local.recv_timeout(WAIT).unwrap().expect("the queued command");
    assert_eq!((message.topic(), message.payload(), message.qos()), ("cmd/reboot", &b"now"[..], Qos::AtLeastOnce));

    // And the binary client takes it back: the in-process one is told.
    let mut device = options().connect().unwrap();
    assert!(device.session_present());
    assert!(matches!(
        local.recv_timeout(WAIT),
        Err(crate::Error::SessionClosed(tinymq_core::ReasonCode::SessionTakenOver))
    ));
    broker.client("operator").unwrap().publish_qos1("cmd/update", b"v2").unwrap();
    let message = device.recv_timeout(WAIT).unwrap().expect("the next command, to the binary client");
    assert_eq!(message.payload, b"v2");
    device.disconnect().unwrap();
    drop(local);
    broker.shutdown();
}
