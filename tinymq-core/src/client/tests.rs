//! The client session against scripted broker bytes, on a virtual clock.

use super::*;
use crate::codec::reason_payload;

const KEEP_ALIVE: Duration = Duration::from_secs(10);

/// A client and the broker's side of its byte stream, on a virtual clock.
struct Harness {
    client: ClientSession,
    start: Instant,
}

impl Harness {
    fn new(client_id: &str) -> Self {
        Self::with_config(&ClientConfig { client_id: client_id.into(), keep_alive: KEEP_ALIVE, ..Default::default() })
    }

    fn with_config(config: &ClientConfig) -> Self {
        let start = epoch();
        Harness { client: ClientSession::new(config, start).unwrap(), start }
    }

    fn at(&self, millis: u64) -> Instant {
        self.start + Duration::from_millis(millis)
    }

    /// Everything the client has queued, marked as written.
    fn sent(&mut self) -> Vec<u8> {
        let bytes = self.client.poll_transmit().map(<[u8]>::to_vec).unwrap_or_default();
        self.client.advance_transmit(bytes.len());
        bytes
    }

    fn events(&mut self) -> Vec<ClientEvent> {
        std::iter::from_fn(|| self.client.poll_event()).collect()
    }

    /// Feeds whole frames, checking they are all used.
    fn receive(&mut self, millis: u64, frames: &[Frame<'_>]) -> Result<(), ClientError> {
        let bytes: Vec<u8> = frames.iter().flat_map(Frame::to_vec).collect();
        let used = self.client.handle_input(self.at(millis), &bytes)?;
        assert_eq!(used, bytes.len());
        Ok(())
    }

    /// Connects at `millis` and answers with ConnAck naming `id`.
    fn connect(&mut self, millis: u64, id: &str) {
        self.client.connect(self.at(millis));
        self.sent();
        self.receive(millis, &[conn_ack(id)]).unwrap();
    }
}

/// The virtual clock's origin; only its differences matter.
#[allow(clippy::disallowed_methods)]
fn epoch() -> Instant {
    Instant::now()
}

fn conn_ack(id: &str) -> Frame<'_> {
    Frame { client_id: id, ..Frame::empty(FrameType::ConnAck) }
}

fn subscribe_frames(filters: &[&str]) -> Vec<u8> {
    filters.iter().flat_map(|f| Frame::with_topic(FrameType::Subscribe, f).to_vec()).collect()
}

#[test]
fn connect_sends_credentials_and_keeps_the_assigned_id() {
    let config = ClientConfig { credentials: Some(("user".into(), "secret".into())), ..Default::default() };
    let mut h = Harness::with_config(&config);
    assert_eq!(h.client.state(), ConnectionState::Idle);
    assert_eq!(h.client.poll_transmit(), None);

    h.client.connect(h.at(0));
    assert_eq!(h.sent(), Frame::connect("", b"user\0secret").to_vec());
    assert_eq!(h.client.state(), ConnectionState::Connecting);
    h.receive(5, &[conn_ack("tinymq-7")]).unwrap();
    assert_eq!(h.events(), [ClientEvent::Connected { client_id: "tinymq-7".into(), session_present: false }]);
    assert!(h.client.is_connected());
    assert_eq!(h.client.client_id(), "tinymq-7");

    // The connection drops; the next Connect asks for the same id.
    h.client.reset();
    assert!(!h.client.is_connected());
    h.client.connect(h.at(1000));
    assert_eq!(h.sent(), Frame::connect("tinymq-7", b"user\0secret").to_vec());
}

#[test]
fn subscriptions_are_sent_again_after_a_reconnect() {
    let mut h = Harness::new("sensor");
    h.connect(0, "sensor");
    h.client.subscribe(h.at(1), "a/#").unwrap();
    h.client.subscribe(h.at(1), "b/+/c").unwrap();
    h.client.subscribe(h.at(1), "gone").unwrap();
    h.client.unsubscribe(h.at(1), "gone").unwrap();
    let mut expected = subscribe_frames(&["a/#", "b/+/c", "gone"]);
    expected.extend(Frame::with_topic(FrameType::Unsubscribe, "gone").to_vec());
    assert_eq!(h.sent(), expected);
    h.receive(2, &[Frame::with_topic(FrameType::SubAck, "a/#"), Frame::with_topic(FrameType::UnsubAck, "gone")])
        .unwrap();
    assert_eq!(
        h.events()[1..],
        [
            ClientEvent::SubAck { filter: "a/#".into(), result: Ok(()) },
            ClientEvent::UnsubAck { filter: "gone".into(), result: Ok(()) },
        ]
    );

    // Lost, then a filter added while disconnected: sent once, after ConnAck.
    h.client.reset();
    h.client.subscribe(h.at(3), "late").unwrap();
    assert_eq!(h.client.poll_transmit(), None);
    h.client.connect(h.at(4));
    assert_eq!(h.sent(), Frame::connect("sensor", b"").to_vec());
    h.receive(5, &[conn_ack("sensor")]).unwrap();
    assert_eq!(h.sent(), subscribe_frames(&["a/#", "b/+/c", "late"]));
    assert_eq!(h.client.subscriptions().collect::<Vec<_>>(), ["a/#", "b/+/c", "late"]);

    // Subscribing again to a held filter sends it but holds it once.
    h.client.subscribe(h.at(6), "a/#").unwrap();
    assert_eq!(h.sent(), subscribe_frames(&["a/#"]));
    assert_eq!(h.client.subscriptions().count(), 3);
}

#[test]
fn nothing_but_connect_precedes_conn_ack() {
    let mut h = Harness::new("");
    h.client.connect(h.at(0));
    h.sent();
    assert_eq!(h.client.publish(h.at(1), "a", b"x", false), Err(ClientError::NotConnected));
    h.client.subscribe(h.at(1), "a").unwrap();
    assert_eq!(h.client.poll_transmit(), None);
    assert_eq!(h.client.poll_timeout(), None, "no Ping before ConnAck");
    h.receive(2, &[conn_ack("tinymq-1")]).unwrap();
    assert_eq!(h.sent(), subscribe_frames(&["a"]));
}

#[test]
fn a_refused_sub_ack_surfaces_and_the_filter_is_forgotten() {
    let mut h = Harness::new("c");
    h.connect(0, "c");
    h.events();
    h.client.subscribe(h.at(1), "private/#").unwrap();
    let payload = reason_payload(ReasonCode::NotAuthorized, "not authorized");
    h.receive(2, &[Frame { payload: &payload, ..Frame::with_topic(FrameType::SubAck, "private/#") }]).unwrap();
    let refused = Reason { code: 2, text: "not authorized".into() };
    assert_eq!(refused.reason_code(), Some(ReasonCode::NotAuthorized));
    assert_eq!(h.events(), [ClientEvent::SubAck { filter: "private/#".into(), result: Err(refused) }]);
    assert_eq!(h.client.subscriptions().count(), 0);
}

#[test]
fn messages_carry_sender_and_retain_flag() {
    let mut h = Harness::new("c");
    h.connect(0, "c");
    h.events();
    h.receive(1, &[Frame::publish("a/b", b"21.5", "sensor", true), Frame::publish("a/b", b"", "other", false)])
        .unwrap();
    assert_eq!(
        h.events(),
        [
            ClientEvent::Message {
                topic: "a/b".into(),
                payload: b"21.5".to_vec(),
                from: "sensor".into(),
                retained: true,
                qos: Qos::AtMostOnce,
                dup: false,
            },
            ClientEvent::Message {
                topic: "a/b".into(),
                payload: vec![],
                from: "other".into(),
                retained: false,
                qos: Qos::AtMostOnce,
                dup: false
            },
        ]
    );
}

#[test]
fn publish_queues_a_frame_and_validates_first() {
    let mut h = Harness::new("c");
    h.connect(0, "c");
    h.client.publish(h.at(1), "sensors/temperature", b"23.5", false).unwrap();
    h.client.publish(h.at(1), "lamp", b"on", true).unwrap();
    let mut expected = Frame::publish("sensors/temperature", b"23.5", "", false).to_vec();
    expected.extend(Frame::publish("lamp", b"on", "", true).to_vec());
    assert_eq!(h.sent(), expected);

    assert!(matches!(
        h.client.publish(h.at(2), "a/+", b"x", false),
        Err(ClientError::InvalidTopic { source: TopicError::WildcardInName, .. })
    ));
    assert!(matches!(h.client.publish(h.at(2), "", b"x", false), Err(ClientError::InvalidTopic { .. })));
    let big = vec![0; (1 << 20) + 1];
    assert_eq!(
        h.client.publish(h.at(2), "a", &big, false),
        Err(ClientError::PayloadTooLarge { len: big.len(), max: 1 << 20 })
    );
    assert!(matches!(h.client.subscribe(h.at(2), "a/#/b"), Err(ClientError::InvalidTopic { .. })));
    assert_eq!(h.client.poll_transmit(), None);
}

#[test]
fn ping_after_half_the_keep_alive_of_silence() {
    let mut h = Harness::new("c");
    h.connect(0, "c");
    assert_eq!(h.client.poll_timeout(), Some(h.at(5_000)));
    h.client.handle_timeout(h.at(4_999)).unwrap();
    assert_eq!(h.client.poll_transmit(), None);
    h.client.handle_timeout(h.at(5_000)).unwrap();
    assert_eq!(h.sent(), Frame::empty(FrameType::Ping).to_vec());

    // Pong is consumed silently and moves both deadlines on.
    h.receive(5_010, &[Frame::empty(FrameType::Pong)]).unwrap();
    assert_eq!(h.events().len(), 1, "only Connected");
    assert_eq!(h.client.poll_timeout(), Some(h.at(10_000)));

    // A publish counts as sending, so the next Ping waits for its silence
    // as long as the broker keeps talking.
    h.client.publish(h.at(8_000), "a", b"x", false).unwrap();
    h.sent();
    h.receive(9_000, &[Frame::publish("b", b"y", "d", false)]).unwrap();
    assert_eq!(h.client.poll_timeout(), Some(h.at(13_000)));
    h.receive(12_000, &[Frame::publish("b", b"y", "d", false)]).unwrap();
    assert_eq!(h.client.poll_timeout(), Some(h.at(13_000)));
    h.client.handle_timeout(h.at(13_000)).unwrap();
    assert_eq!(h.sent(), Frame::empty(FrameType::Ping).to_vec());
}

#[test]
fn a_publisher_that_never_hears_back_pings_anyway() {
    let mut h = Harness::new("c");
    h.connect(0, "c");
    for millis in (1_000..=5_000).step_by(1_000) {
        h.client.publish(h.at(millis), "a", b"x", false).unwrap();
    }
    h.sent();
    // Sending all along, but nothing received since ConnAck at 0.
    assert_eq!(h.client.poll_timeout(), Some(h.at(5_000)));
    h.client.handle_timeout(h.at(5_000)).unwrap();
    assert_eq!(h.sent(), Frame::empty(FrameType::Ping).to_vec());
}

#[test]
fn a_silent_broker_is_reported_dead() {
    let mut h = Harness::new("c");
    h.connect(0, "c");
    h.client.handle_timeout(h.at(5_000)).unwrap();
    assert_eq!(h.sent(), Frame::empty(FrameType::Ping).to_vec());
    // Dead 1.5 × keep-alive after the last byte received, unless bytes come.
    assert_eq!(h.client.poll_timeout(), Some(h.at(10_000)), "the next send-idle Ping");
    h.client.handle_timeout(h.at(10_000)).unwrap();
    assert_eq!(h.sent(), Frame::empty(FrameType::Ping).to_vec());
    assert_eq!(h.client.poll_timeout(), Some(h.at(15_000)));
    h.client.handle_timeout(h.at(14_999)).unwrap();
    assert_eq!(
        h.client.handle_timeout(h.at(15_000)),
        Err(ClientError::KeepAliveTimeout { silent_for: Duration::from_secs(15) })
    );
    assert_eq!(h.client.state(), ConnectionState::Closed);
    assert_eq!(h.client.poll_timeout(), None);
}

#[test]
fn a_late_timer_gives_the_ping_a_full_interval() {
    let mut h = Harness::new("c");
    h.connect(0, "c");
    // The shell was asleep well past 1.5 × keep-alive: Ping first, no verdict.
    h.client.handle_timeout(h.at(60_000)).unwrap();
    assert_eq!(h.sent(), Frame::empty(FrameType::Ping).to_vec());
    assert_eq!(h.client.poll_timeout(), Some(h.at(65_000)));
    h.client.handle_timeout(h.at(65_000)).unwrap();
    h.receive(66_000, &[Frame::empty(FrameType::Pong)]).unwrap();
    assert!(h.client.is_connected());
    h.client.handle_timeout(h.at(70_000)).unwrap();
    assert!(h.client.is_connected());
}

#[test]
fn keep_alive_zero_turns_pings_off() {
    let config = ClientConfig { keep_alive: Duration::ZERO, ..Default::default() };
    let mut h = Harness::with_config(&config);
    h.connect(0, "c");
    assert_eq!(h.client.poll_timeout(), None);
    h.client.handle_timeout(h.at(1_000_000)).unwrap();
    assert_eq!(h.client.poll_transmit(), None);
}

#[test]
fn a_broker_disconnect_surfaces_its_code_and_text() {
    let mut h = Harness::new("c");
    h.connect(0, "c");
    h.events();
    let payload = reason_payload(ReasonCode::SessionTakenOver, "session taken over");
    let mut bytes = Frame { payload: &payload, ..Frame::empty(FrameType::Disconnect) }.to_vec();
    let disconnect_len = bytes.len();
    // Bytes after the Disconnect are not read.
    bytes.extend(Frame::publish("a", b"x", "d", false).to_vec());
    assert_eq!(h.client.handle_input(h.at(1), &bytes), Ok(disconnect_len));
    let reason = Reason { code: 3, text: "session taken over".into() };
    assert_eq!(reason.reason_code(), Some(ReasonCode::SessionTakenOver));
    assert_eq!(reason.to_string(), "session taken over (code 3)");
    assert_eq!(h.events(), [ClientEvent::Disconnected(reason)]);
    assert_eq!(h.client.state(), ConnectionState::Closed);
    assert_eq!(h.client.handle_input(h.at(2), &bytes[disconnect_len..]), Err(ClientError::NotConnected));
    assert_eq!(h.client.publish(h.at(2), "a", b"x", false), Err(ClientError::NotConnected));
}

#[test]
fn a_refused_connect_is_a_disconnect_before_conn_ack() {
    let mut h = Harness::new("c");
    h.client.connect(h.at(0));
    let payload = reason_payload(ReasonCode::NotAuthorized, "bad credentials");
    h.receive(1, &[Frame { payload: &payload, ..Frame::empty(FrameType::Disconnect) }]).unwrap();
    assert_eq!(h.events(), [ClientEvent::Disconnected(Reason { code: 2, text: "bad credentials".into() })]);
}

#[test]
fn frames_split_across_reads_decode_like_one_read() {
    let mut stream = conn_ack("tinymq-3").to_vec();
    stream.extend(Frame::with_topic(FrameType::SubAck, "a/+").to_vec());
    stream.extend(Frame::publish("a/b", b"payload", "sensor", true).to_vec());
    stream.extend(Frame::empty(FrameType::Pong).to_vec());
    stream.extend(Frame::publish("a/c", b"", "sensor", false).to_vec());

    let mut whole = Harness::new("");
    whole.client.connect(whole.at(0));
    assert_eq!(whole.client.handle_input(whole.at(1), &stream), Ok(stream.len()));
    let expected = whole.events();
    assert_eq!(expected.len(), 4);

    for cut in 0..=stream.len() {
        for second_cut in [cut, (cut + 7).min(stream.len())] {
            let mut h = Harness::new("");
            h.client.connect(h.at(0));
            // The shell's read loop: append what arrived, drop what was used.
            let mut held = Vec::new();
            for chunk in [&stream[..cut], &stream[cut..second_cut], &stream[second_cut..]] {
                held.extend_from_slice(chunk);
                let used = h.client.handle_input(h.at(1), &held).unwrap();
                held.drain(..used);
            }
            assert!(held.is_empty(), "cut {cut}");
            assert_eq!(h.events(), expected, "cut {cut}/{second_cut}");
        }
    }
}

#[test]
fn broker_protocol_errors_make_the_connection_unusable() {
    let mut h = Harness::new("c");
    h.client.connect(h.at(0));
    assert_eq!(
        h.client.handle_input(h.at(1), &Frame::publish("a", b"x", "d", false).to_vec()),
        Err(ClientError::UnexpectedFrame { kind: FrameType::Publish, context: "before ConnAck" })
    );
    assert_eq!(h.client.state(), ConnectionState::Closed);

    h.connect(2, "c");
    let error = h.client.handle_input(h.at(3), &Frame::with_topic(FrameType::Subscribe, "a").to_vec());
    assert!(matches!(error, Err(ClientError::UnexpectedFrame { kind: FrameType::Subscribe, .. })));

    h.connect(4, "c");
    assert_eq!(h.client.handle_input(h.at(5), &[0x0b]), Err(ClientError::InvalidFrame(DecodeError::UnknownType(11))));
    assert!(!h.client.is_connected());
}

#[test]
fn invalid_configs_are_refused() {
    let now = epoch();
    let long_id = ClientConfig { client_id: "x".repeat(257), ..Default::default() };
    assert_eq!(ClientSession::new(&long_id, now).err(), Some(ClientError::ClientIdTooLong { len: 257, max: 256 }));
    let nul = ClientConfig { credentials: Some(("a\0b".into(), "p".into())), ..Default::default() };
    assert!(matches!(ClientSession::new(&nul, now), Err(ClientError::InvalidCredentials(_))));
}

#[test]
fn debug_output_leaves_the_password_out() {
    let config = ClientConfig { credentials: Some(("user".into(), "hunter2".into())), ..Default::default() };
    let session = ClientSession::new(&config, epoch()).unwrap();
    for text in [format!("{config:?}"), format!("{session:?}")] {
        assert!(!text.contains("hunter2"), "{text}");
    }
    assert!(format!("{config:?}").contains("user"));
}

#[test]
fn partial_writes_are_tracked() {
    let mut h = Harness::new("c");
    h.client.connect(h.at(0));
    let connect = Frame::connect("c", b"").to_vec();
    assert_eq!(h.client.poll_transmit(), Some(&connect[..]));
    h.client.advance_transmit(4);
    assert_eq!(h.client.poll_transmit(), Some(&connect[4..]));
    h.client.advance_transmit(connect.len());
    assert_eq!(h.client.poll_transmit(), None);
}

#[test]
fn a_clean_disconnect_is_queued() {
    let mut h = Harness::new("c");
    h.connect(0, "c");
    h.client.disconnect(h.at(1));
    assert_eq!(h.sent(), Frame::empty(FrameType::Disconnect).to_vec());
    assert_eq!(h.client.state(), ConnectionState::Closed);
}
