//! Many connections on one real broker, and the connection limit.

use crate::support::{BrokerProcess, Next, RawClient, raise_open_file_limit};
use tinymq_core::{Frame, FrameType};

const CONNECTIONS: usize = 1000;

#[test]
fn a_thousand_connections_each_get_the_message_for_their_own_topic() {
    // 1,000 sockets here and 1,000 in the broker, which inherits the limit.
    let limit = raise_open_file_limit(4096);
    assert!(limit >= CONNECTIONS as libc::rlim_t + 100, "open-file limit {limit} is too low for this test");
    let broker = BrokerProcess::start(&["--threads", "2"]);

    // Connect and subscribe all without waiting, then collect the answers:
    // 1,000 handshakes in flight at once.
    let mut subscribers: Vec<RawClient> = (0..CONNECTIONS)
        .map(|i| {
            let mut client = broker.open();
            let mut bytes = Frame::connect(&format!("sub-{i}"), b"").to_vec();
            bytes.extend(Frame::with_topic(FrameType::Subscribe, &format!("own/{i}")).to_vec());
            client.send_bytes(&bytes);
            client
        })
        .collect();
    for (i, client) in subscribers.iter_mut().enumerate() {
        let ack = client.recv();
        assert_eq!((ack.kind, ack.client_id.as_str()), (FrameType::ConnAck, format!("sub-{i}").as_str()));
        client.client_id = ack.client_id;
        let ack = client.recv();
        assert_eq!(
            (ack.kind, ack.topic.as_str(), ack.payload.len()),
            (FrameType::SubAck, format!("own/{i}").as_str(), 0)
        );
    }

    let mut publisher = broker.connect("pub");
    let mut batch = Vec::new();
    for i in 0..CONNECTIONS {
        batch.extend(Frame::publish(&format!("own/{i}"), format!("for {i}").as_bytes(), "", false).to_vec());
    }
    publisher.send_bytes(&batch);
    for (i, client) in subscribers.iter_mut().enumerate() {
        let got = client.recv_publish();
        assert_eq!(
            (got.topic.as_str(), got.payload.as_slice(), got.client_id.as_str()),
            (format!("own/{i}").as_str(), format!("for {i}").as_bytes(), "pub")
        );
    }
    // Each got its own and nothing else: a last message to all of them
    // (through `own/+`) is the next thing each receives.
    publisher.subscribe("done");
    for client in &mut subscribers {
        client.subscribe("own/+");
    }
    publisher.publish("own/last", b"last");
    for client in &mut subscribers {
        assert_eq!(client.recv_publish().payload, b"last", "{}", client.client_id);
    }
}

#[test]
fn connections_over_the_limit_are_closed_and_a_freed_slot_is_reused() {
    // One loop: accepts and closes are handled in the order they happen.
    let broker = BrokerProcess::start(&["--max-connections", "3", "--threads", "1"]);
    let mut held: Vec<RawClient> = (0..3).map(|i| broker.connect(&format!("c{i}"))).collect();

    let mut extra = broker.open();
    // The broker may close before or after this write arrives.
    let _ = extra.try_send_bytes(&Frame::connect("extra", b"").to_vec());
    match extra.next_within(crate::support::WAIT) {
        Next::Closed => {}
        other => panic!("a fourth connection must be closed without a ConnAck, got {other:?}"),
    }
    for client in &mut held {
        client.ping();
    }

    // A clean Disconnect frees a slot once the broker closes its side.
    let mut leaving = held.pop().unwrap();
    leaving.send(&Frame::empty(FrameType::Disconnect));
    leaving.expect_closed();
    let mut replacement = broker.connect("replacement");
    replacement.ping();
}

#[test]
fn a_subscriber_that_never_reads_is_cut_as_a_slow_consumer() {
    let broker = BrokerProcess::start(&[]);
    let mut stuck = broker.connect("stuck");
    stuck.subscribe("flood");
    let mut bystander = broker.connect("bystander");
    bystander.subscribe("after");
    let mut publisher = broker.connect("flooder");
    // 48 MiB: more than the 16 MiB outbound limit plus what the kernel's
    // socket buffers absorb.
    let payload = vec![0x5a; 1 << 20];
    let mut frame = Vec::new();
    for _ in 0..48 {
        frame.clear();
        tinymq_core::Frame::publish("flood", &payload, "", false).encode(&mut frame);
        publisher.send_bytes(&frame);
    }
    // Once the Pong is back every publish was routed.
    publisher.ping();
    publisher.publish("after", b"still served");
    assert_eq!(bystander.recv_publish().payload, b"still served");
    // What was queued before the limit arrives, then Disconnect 7.
    stuck.expect_disconnect(tinymq_core::ReasonCode::SlowConsumer);
}

#[test]
fn a_subscriber_slower_than_its_publisher_slows_it_down_instead_of_being_cut() {
    let broker = BrokerProcess::start(&[]);
    let mut slow = broker.connect("slow");
    slow.subscribe("flood");
    let mut publisher = broker.connect("fast");
    // 64 MiB, four times the 16 MiB outbound limit: a publisher the broker
    // read at full speed would overflow the queue of a subscriber that
    // takes a pause after each message. Read a little slower while that
    // queue is long, it fills it no faster than it drains.
    const MESSAGES: u8 = 64;
    let sender = std::thread::spawn(move || {
        let mut payload = vec![0x5a; 1 << 20];
        let mut frame = Vec::new();
        for i in 0..MESSAGES {
            payload[0] = i;
            frame.clear();
            Frame::publish("flood", &payload, "", false).encode(&mut frame);
            publisher.send_bytes(&frame);
        }
        publisher.ping();
    });
    for i in 0..MESSAGES {
        let message = slow.recv_publish();
        assert_eq!((message.payload.len(), message.payload[0]), (1 << 20, i), "message {i} in order, whole");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    sender.join().unwrap();
}
