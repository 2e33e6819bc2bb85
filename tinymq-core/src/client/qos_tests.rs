//! The client's QoS 1, session and will, against scripted broker bytes.

use super::*;

#[allow(clippy::disallowed_methods)]
fn epoch() -> Instant {
    Instant::now()
}

fn config() -> ClientConfig {
    ClientConfig { client_id: "dev".into(), max_inflight: 2, ..Default::default() }
}

fn sent(client: &mut ClientSession) -> Vec<Frame<'static>> {
    let bytes = client.poll_transmit().map(<[u8]>::to_vec).unwrap_or_default();
    client.advance_transmit(bytes.len());
    // Leak is fine in a test: frames borrow the bytes.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    let mut frames = Vec::new();
    let mut at = 0;
    while let Ok(Decoded::Frame { frame, consumed }) = Decoder::default().decode(&bytes[at..]) {
        frames.push(frame);
        at += consumed;
    }
    assert_eq!(at, bytes.len());
    frames
}

fn receive(client: &mut ClientSession, now: Instant, frames: &[Frame<'_>]) {
    let bytes: Vec<u8> = frames.iter().flat_map(Frame::to_vec).collect();
    assert_eq!(client.handle_input(now, &bytes), Ok(bytes.len()));
}

fn connect(client: &mut ClientSession, now: Instant, present: bool) -> Vec<Frame<'static>> {
    client.connect(now);
    let connect = sent(client);
    receive(client, now, &[Frame { session: present, client_id: "dev", ..Frame::empty(FrameType::ConnAck) }]);
    assert_eq!(client.poll_event(), Some(ClientEvent::Connected { client_id: "dev".into(), session_present: present }));
    connect
}

#[test]
fn a_v1_configuration_sends_the_v1_connect() {
    let now = epoch();
    let mut client = ClientSession::new(&config(), now).unwrap();
    let connect = connect(&mut client, now, false);
    assert_eq!(connect, [Frame::connect("dev", b"")]);
}

#[test]
fn persistence_and_will_go_in_connect() {
    let now = epoch();
    let will =
        ClientWill { topic: "dev/status".into(), payload: b"gone".to_vec(), retain: true, qos: Qos::AtLeastOnce };
    let config = ClientConfig { persistent: true, session_expiry: 60, will: Some(will), ..config() };
    let mut client = ClientSession::new(&config, now).unwrap();
    let connect = connect(&mut client, now, true);
    let options = ConnectOptions::parse(&connect[0]).unwrap();
    assert!(options.persistent && options.session_expiry == 60);
    assert_eq!(options.will, Some(Will { topic: "dev/status", payload: b"gone", retain: true, qos: Qos::AtLeastOnce }));

    let anonymous = ClientConfig { client_id: String::new(), persistent: true, ..Default::default() };
    assert_eq!(ClientSession::new(&anonymous, now).unwrap_err(), ClientError::PersistentWithoutId);
    let bad_will = ClientWill { topic: "a/#".into(), payload: vec![], retain: false, qos: Qos::AtMostOnce };
    let config = ClientConfig { will: Some(bad_will), ..Default::default() };
    assert!(matches!(ClientSession::new(&config, now), Err(ClientError::InvalidTopic { .. })));
    let broker_will = ClientWill { topic: "$SYS/w".into(), payload: vec![], retain: false, qos: Qos::AtMostOnce };
    let config = ClientConfig { will: Some(broker_will), ..Default::default() };
    assert_eq!(ClientSession::new(&config, now).unwrap_err(), ClientError::BrokerTopic("$SYS/w".into()));
}

#[test]
fn the_window_bounds_unacknowledged_publishes_and_acks_free_it() {
    let now = epoch();
    let mut client = ClientSession::new(&config(), now).unwrap();
    connect(&mut client, now, false);
    assert_eq!(client.publish_qos1(now, "t", b"1", false), Ok(1));
    assert_eq!(client.publish_qos1(now, "t", b"2", false), Ok(2));
    assert_eq!(client.publish_qos1(now, "t", b"3", false), Err(ClientError::WindowFull(2)));
    assert_eq!(client.publish_qos1(now, "$SYS/x", b"", false), Err(ClientError::BrokerTopic("$SYS/x".into())));
    let frames = sent(&mut client);
    assert_eq!(
        frames,
        [Frame::publish_qos1("t", b"1", "", false, 1, false), Frame::publish_qos1("t", b"2", "", false, 2, false)]
    );
    // Acks in any order; an unknown or repeated one is ignored.
    receive(&mut client, now, &[Frame::pub_ack(2), Frame::pub_ack(2), Frame::pub_ack(9)]);
    assert_eq!(client.poll_event(), Some(ClientEvent::Published { packet_id: 2 }));
    assert_eq!(client.poll_event(), None);
    assert_eq!(client.unacknowledged(), 1);
    assert_eq!(client.publish_qos1(now, "t", b"3", false), Ok(3));
}

#[test]
fn unacknowledged_publishes_go_again_after_a_reconnect_with_dup_in_order() {
    let now = epoch();
    let mut client = ClientSession::new(&ClientConfig { max_inflight: 3, ..config() }, now).unwrap();
    connect(&mut client, now, false);
    client.publish_qos1(now, "t", b"1", false).unwrap();
    client.publish_qos1(now, "t", b"2", false).unwrap();
    sent(&mut client);
    client.reset();
    // Published while disconnected: held, sent after ConnAck, not DUP.
    client.publish_qos1(now, "t", b"3", true).unwrap();
    client.subscribe_qos(now, "in/#", Qos::AtLeastOnce).unwrap();
    client.connect(now);
    sent(&mut client);
    receive(&mut client, now, &[Frame { client_id: "dev", ..Frame::empty(FrameType::ConnAck) }]);
    assert_eq!(
        sent(&mut client),
        [
            Frame { qos: Qos::AtLeastOnce, ..Frame::with_topic(FrameType::Subscribe, "in/#") },
            Frame::publish_qos1("t", b"1", "", false, 1, true),
            Frame::publish_qos1("t", b"2", "", false, 2, true),
            Frame::publish_qos1("t", b"3", "", true, 3, false),
        ]
    );
}

#[test]
fn a_qos1_message_is_acknowledged_when_taken_on_its_own_connection() {
    let now = epoch();
    let mut client = ClientSession::new(&config(), now).unwrap();
    connect(&mut client, now, false);
    receive(&mut client, now, &[Frame::publish_qos1("in/a", b"x", "p", false, 40, true)]);
    assert_eq!(client.poll_transmit(), None, "not before the application has it");
    let message = client.poll_event().unwrap();
    assert!(matches!(message, ClientEvent::Message { qos: Qos::AtLeastOnce, dup: true, .. }));
    assert_eq!(sent(&mut client), [Frame::pub_ack(40)]);

    // Lost before it was taken: no ack, on this connection or the next.
    receive(&mut client, now, &[Frame::publish_qos1("in/a", b"y", "p", false, 41, false)]);
    client.reset();
    client.connect(now);
    sent(&mut client);
    receive(&mut client, now, &[Frame { client_id: "dev", ..Frame::empty(FrameType::ConnAck) }]);
    assert!(matches!(client.poll_event(), Some(ClientEvent::Message { .. })));
    assert!(matches!(client.poll_event(), Some(ClientEvent::Connected { .. })));
    assert_eq!(sent(&mut client), []);
}
