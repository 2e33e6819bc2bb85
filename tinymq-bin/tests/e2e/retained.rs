//! Retained messages (RETAIN, type byte 0x82) through the real binary.

use crate::support::{BrokerProcess, QUIET};
use tinymq_core::FrameType;

#[test]
fn a_new_subscriber_gets_the_retained_value_right_after_its_suback() {
    let broker = BrokerProcess::start(&[]);
    let mut publisher = broker.connect("thermostat");
    publisher.publish_retained("home/temp", b"20");
    publisher.publish_retained("office/temp", b"18");
    publisher.publish("home/humidity", b"40");
    // Handled in order: once the Pong is back the values are stored.
    publisher.ping();

    let mut late = broker.connect("late");
    late.subscribe("home/#");
    let retained = late.recv();
    assert_eq!(
        (retained.type_byte, retained.topic.as_str(), retained.payload.as_slice(), retained.client_id.as_str()),
        (0x82, "home/temp", &b"20"[..], "thermostat"),
        "the retained value, flagged, stamped with its publisher"
    );
    // Only matching values, and nothing for the non-retained publish.
    publisher.publish("home/sentinel", b"live");
    let next = late.recv_publish();
    assert_eq!((next.type_byte, next.topic.as_str()), (0x02, "home/sentinel"), "{next:?}");

    // A second filter matching the same value sends it again, with its own
    // SubAck first.
    late.send(&tinymq_core::Frame::with_topic(FrameType::Subscribe, "+/temp"));
    let ack = late.recv();
    assert_eq!((ack.kind, ack.topic.as_str(), ack.payload.as_slice()), (FrameType::SubAck, "+/temp", &[][..]));
    let mut values: Vec<(u8, String)> = (0..2).map(|_| late.recv_publish()).map(|m| (m.type_byte, m.topic)).collect();
    values.sort();
    assert_eq!(values, [(0x82, "home/temp".into()), (0x82, "office/temp".into())]);
}

#[test]
fn live_traffic_never_carries_retain() {
    let broker = BrokerProcess::start(&[]);
    let mut live = broker.connect("live");
    live.subscribe("home/#");
    let mut publisher = broker.connect("pub");
    publisher.publish_retained("home/temp", b"21");
    let got = live.recv_publish();
    assert_eq!(
        (got.type_byte, got.payload.as_slice()),
        (0x02, &b"21"[..]),
        "a retained publish goes out live unflagged"
    );
    assert!(!got.retain());
}

#[test]
fn a_newer_retained_value_replaces_the_older() {
    let broker = BrokerProcess::start(&[]);
    let mut publisher = broker.connect("pub");
    publisher.publish_retained("config/rate", b"1");
    publisher.publish_retained("config/rate", b"2");
    publisher.ping();
    let mut sub = broker.connect("sub");
    sub.subscribe("config/rate");
    let got = sub.recv_publish();
    assert_eq!((got.type_byte, got.payload.as_slice()), (0x82, &b"2"[..]));
    publisher.publish("config/rate", b"live");
    assert_eq!(sub.recv_publish().payload, b"live", "one value per topic, not a history");
}

#[test]
fn an_empty_retained_payload_deletes_the_value_and_is_delivered_empty() {
    let broker = BrokerProcess::start(&[]);
    let mut publisher = broker.connect("pub");
    let mut live = broker.connect("live");
    live.subscribe("home/#");
    publisher.publish_retained("home/temp", b"20");
    assert_eq!(live.recv_publish().payload, b"20");

    // Delivered, empty, as MQTT has it: live subscribers learn the value
    // is gone (the same on every face of the broker).
    publisher.publish_retained("home/temp", b"");
    let cleared = live.recv();
    assert_eq!(
        (cleared.type_byte, cleared.topic.as_str(), cleared.payload.as_slice()),
        (0x02, "home/temp", &b""[..]),
        "live traffic, so no RETAIN flag"
    );
    publisher.ping();

    let mut late = broker.connect("late");
    late.subscribe("home/#");
    publisher.publish("home/sentinel", b"s2");
    let next = late.recv();
    assert_eq!(
        (next.type_byte, next.topic.as_str(), next.payload.as_slice()),
        (0x02, "home/sentinel", &b"s2"[..]),
        "no retained value was left"
    );
    late.expect_silence(QUIET);
}

#[test]
fn retained_values_survive_a_clean_restart_with_a_data_directory() {
    let data = crate::support::ScratchDir::new();
    let dir = data.path().to_str().unwrap();
    let mut broker = BrokerProcess::start(&["--data", dir]);
    let mut publisher = broker.connect("keeper");
    publisher.publish_retained("kept/a", b"1");
    publisher.publish_retained("kept/b", b"2");
    publisher.publish_retained("kept/b", b"");
    publisher.publish_retained("kept/c", b"3");
    publisher.publish_retained("kept/c", b"4");
    publisher.ping();
    broker.signal(libc::SIGTERM);
    publisher.expect_disconnect(tinymq_core::ReasonCode::ShuttingDown);
    let status = broker.wait_exit(crate::support::WAIT);
    assert_eq!(status.code(), Some(0), "{status}");

    let broker = BrokerProcess::start(&["--data", dir]);
    let mut reader = broker.connect("reader");
    reader.subscribe("kept/#");
    let mut values: Vec<(u8, String, Vec<u8>, String)> =
        (0..2).map(|_| reader.recv_publish()).map(|m| (m.type_byte, m.topic, m.payload, m.client_id)).collect();
    values.sort();
    assert_eq!(
        values,
        [
            (0x82, "kept/a".into(), b"1".to_vec(), "keeper".into()),
            (0x82, "kept/c".into(), b"4".to_vec(), "keeper".into())
        ]
    );
    // Nothing else (kept/b was deleted): the next frame is live traffic.
    let mut publisher = broker.connect("pub");
    publisher.publish("kept/z", b"live");
    assert_eq!(reader.recv().type_byte, 0x02);
}
