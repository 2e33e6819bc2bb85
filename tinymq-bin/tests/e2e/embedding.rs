//! The embedding API (`tinymq_net::Broker`) in this process, reached by
//! in-process clients and by raw protocol clients over real TCP.

use std::sync::mpsc;
use std::time::Duration;

use crate::support::{Endpoint, QUIET, RawClient, ScratchDir, WAIT};
use tinymq_core::ReasonCode;
use tinymq_net::Durability;
use tinymq_net::{Broker, Error, ReceivedBatch};

fn start(threads: usize) -> (Broker, Endpoint) {
    let broker = Broker::builder()
        .listen_tcp("127.0.0.1:0".parse().unwrap())
        .threads(threads)
        .start()
        .expect("start an in-process broker");
    let endpoint = Endpoint::Tcp(broker.tcp_addr().expect("a TCP listener with its real port"));
    (broker, endpoint)
}

/// Runs `broker.shutdown()` on another thread and fails if it does not
/// return within [`WAIT`].
fn shutdown_within_wait(broker: Broker) {
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || {
        broker.shutdown();
        let _ = done.send(());
    });
    finished.recv_timeout(WAIT).expect("Broker::shutdown returned");
}

#[test]
fn in_process_and_tcp_clients_exchange_messages_both_ways() {
    let (broker, endpoint) = start(2);
    let service = broker.client("service").unwrap();
    service.subscribe("to-service/#").unwrap();
    let mut device = RawClient::connect(&endpoint, "device");
    device.subscribe("to-device");

    device.publish("to-service/status", b"ready");
    let got = service.recv_timeout(WAIT).unwrap().expect("the device's message");
    assert_eq!(
        (got.topic(), got.payload(), got.from(), got.is_retained()),
        ("to-service/status", &b"ready"[..], "device", false)
    );

    assert_eq!(service.publish("to-device", b"go").unwrap(), 1, "one subscriber reached");
    let got = device.recv_publish();
    assert_eq!(
        (got.type_byte, got.topic.as_str(), got.payload.as_slice(), got.client_id.as_str()),
        (0x02, "to-device", &b"go"[..], "service")
    );

    // A value retained in-process reaches a later TCP subscriber with
    // RETAIN, right after the SubAck.
    service.publish_retained("config/rate", b"10").unwrap();
    device.subscribe("config/#");
    let got = device.recv_publish();
    assert_eq!((got.type_byte, got.payload.as_slice(), got.client_id.as_str()), (0x82, &b"10"[..], "service"));

    // And one retained over TCP reaches a later in-process subscriber.
    device.publish_retained("status/device", b"up");
    device.ping();
    let observer = broker.client("observer").unwrap();
    observer.subscribe("status/+").unwrap();
    let got = observer.recv_timeout(WAIT).unwrap().expect("the retained status");
    assert_eq!(
        (got.topic(), got.payload(), got.from(), got.is_retained()),
        ("status/device", &b"up"[..], "device", true)
    );

    assert!(service.try_recv().unwrap().is_none(), "nothing else reached the service");
    shutdown_within_wait(broker);
}

#[test]
fn shutdown_sends_disconnect_6_and_returns() {
    let (broker, endpoint) = start(2);
    let local = broker.client("local").unwrap();
    local.subscribe("x").unwrap();
    // Several connections, spread over both loops.
    let mut remotes: Vec<RawClient> = (0..4).map(|i| RawClient::connect(&endpoint, &format!("remote-{i}"))).collect();
    for remote in &mut remotes {
        remote.subscribe("x");
    }
    shutdown_within_wait(broker);
    for remote in &mut remotes {
        remote.expect_disconnect(ReasonCode::ShuttingDown);
    }
    // Every thread stopped: the listener is gone and the in-process client
    // is told why.
    let Endpoint::Tcp(address) = endpoint else { unreachable!() };
    assert!(std::net::TcpStream::connect_timeout(&address, WAIT).is_err(), "nobody listens after shutdown");
    let ended = local.recv_timeout(WAIT);
    assert!(matches!(ended, Err(Error::BrokerStopped)), "{ended:?}");
    assert!(matches!(local.publish("x", b"late"), Err(Error::BrokerStopped)));
}

#[test]
fn an_in_process_waiter_always_sees_broker_stopped() {
    // A waiter blocked in recv_timeout when shutdown begins, and a call
    // after it, get the same error every time (it once raced between two).
    for round in 0..100 {
        let broker = Broker::builder().threads(1).start().unwrap();
        let local = broker.client("waiter").unwrap();
        let (started, waiting) = mpsc::channel();
        let waiter = std::thread::spawn(move || {
            started.send(()).unwrap();
            let during = local.recv_timeout(Duration::from_secs(30)).map(|m| m.is_some());
            let after = local.recv_timeout(Duration::ZERO).map(|m| m.is_some());
            (during, after)
        });
        waiting.recv().unwrap();
        broker.shutdown();
        let (during, after) = waiter.join().unwrap();
        assert!(
            matches!((&during, &after), (Err(Error::BrokerStopped), Err(Error::BrokerStopped))),
            "round {round}: a waiter during shutdown got {during:?}, a call after it {after:?}"
        );
    }
}

#[test]
fn a_tcp_clients_disconnect_drops_its_subscriptions() {
    let (broker, endpoint) = start(1);
    let local = broker.client("local").unwrap();
    let mut remote = RawClient::connect(&endpoint, "remote");
    remote.subscribe("x");
    remote.subscribe("y/#");
    assert_eq!(local.publish("x", b"1").unwrap(), 1);
    assert_eq!(remote.recv_publish().payload, b"1");
    remote.send(&tinymq_core::Frame::empty(tinymq_core::FrameType::Disconnect));
    // The broker closes only after acting on the Disconnect.
    remote.expect_closed();
    assert_eq!(local.publish("x", b"2").unwrap(), 0, "no subscriber left for x");
    assert_eq!(local.publish("y/z", b"3").unwrap(), 0, "no subscriber left for y/#");
    assert_eq!(broker.stats().subscriptions, 0);
    shutdown_within_wait(broker);
}

#[test]
fn takeover_works_across_in_process_and_tcp_clients() {
    let (broker, endpoint) = start(2);
    let mut remote = RawClient::connect(&endpoint, "shared-id");
    let local = broker.client("shared-id").unwrap();
    assert_eq!(local.client_id(), "shared-id");
    remote.expect_disconnect(ReasonCode::SessionTakenOver);

    local.subscribe("t").unwrap();
    let mut again = RawClient::connect(&endpoint, "shared-id");
    let ended = local.recv_timeout(WAIT);
    assert!(matches!(ended, Err(Error::SessionClosed(ReasonCode::SessionTakenOver))), "{ended:?}");
    assert!(matches!(local.subscribe("u"), Err(Error::SessionClosed(ReasonCode::SessionTakenOver))));
    again.subscribe("t");
    let publisher = broker.client("").unwrap();
    publisher.publish("t", b"new holder").unwrap();
    assert_eq!(again.recv_publish().payload, b"new holder");
    again.expect_silence(QUIET);
    assert!(matches!(local.try_recv(), Err(Error::SessionClosed(ReasonCode::SessionTakenOver))));
    shutdown_within_wait(broker);
}

#[test]
fn a_taken_over_in_process_client_is_no_longer_routed_to() {
    let (broker, endpoint) = start(1);
    let old = broker.client("shared-id").unwrap();
    old.subscribe("t").unwrap();
    let mut tcp_holder = RawClient::connect(&endpoint, "shared-id");
    assert!(matches!(old.recv_timeout(WAIT), Err(Error::SessionClosed(ReasonCode::SessionTakenOver))));
    let publisher = broker.client("publisher").unwrap();
    assert_eq!(publisher.publish("t", b"1").unwrap(), 0, "the closed session is not a subscriber");
    tcp_holder.ping();

    // The same for an in-process client taking over another.
    let first = broker.client("local-id").unwrap();
    first.subscribe("u").unwrap();
    let _second = broker.client("local-id").unwrap();
    assert!(matches!(first.try_recv(), Err(Error::SessionClosed(ReasonCode::SessionTakenOver))));
    assert_eq!(publisher.publish("u", b"2").unwrap(), 0, "the closed session is not a subscriber");
    let stats = broker.stats();
    assert_eq!((stats.subscriptions, stats.local_queue_drops), (0, 0), "{stats:?}");
    drop((old, first));
    shutdown_within_wait(broker);
}

#[test]
fn in_process_clients_validate_what_they_send() {
    let broker = Broker::builder().threads(1).start().unwrap();
    let client = broker.client("").unwrap();
    assert!(!client.client_id().is_empty(), "an id is assigned");
    assert!(matches!(client.publish("a/+", b"x"), Err(Error::InvalidTopic { .. })));
    assert!(matches!(client.publish("", b"x"), Err(Error::InvalidTopic { .. })));
    assert!(matches!(client.subscribe("a/#/b"), Err(Error::InvalidTopic { .. })));
    let big = vec![0u8; (1 << 20) + 1];
    assert!(matches!(client.publish("a", &big), Err(Error::PayloadTooLarge { .. })));
    assert_eq!(client.publish("a", &big[1..]).unwrap(), 0, "exactly 1 MiB is fine");
    shutdown_within_wait(broker);
}

#[test]
fn shutdown_commits_stored_values_an_embedder_published_within_a_long_interval() {
    let data = ScratchDir::new();
    let open = || {
        Broker::builder()
            .threads(1)
            .data_dir(data.path())
            .durability(Durability::Batched(Duration::from_secs(600)))
            .start()
            .expect("start a broker on the data directory")
    };
    let broker = open();
    let publisher = broker.client("publisher").unwrap();
    for n in 0..300 {
        publisher.publish_retained(&format!("kept/{n}"), format!("value {n}").as_bytes()).unwrap();
    }
    // A later write to the same topic wins, and a delete stays a delete.
    publisher.publish_retained("kept/0", b"last").unwrap();
    publisher.publish_retained("kept/1", b"").unwrap();
    let stats = broker.stats();
    assert_eq!((stats.store_writes, stats.store_commits), (302, 0), "nothing committed before the shutdown");
    shutdown_within_wait(broker);

    let broker = open();
    let reader = broker.client("reader").unwrap();
    reader.subscribe("kept/#").unwrap();
    let mut values = std::collections::BTreeMap::new();
    while let Some(message) = reader.recv_timeout(QUIET).unwrap() {
        assert!(message.is_retained(), "{message:?}");
        values.insert(message.topic().to_owned(), message.payload().to_vec());
    }
    assert_eq!(values.len(), 299, "every value but the deleted one");
    assert_eq!(values["kept/0"], b"last");
    assert!(!values.contains_key("kept/1"));
    assert_eq!(values["kept/299"], b"value 299");
    broker.shutdown();
}

#[test]
fn recv_batch_takes_every_queued_message_in_order_and_waits_for_the_first() {
    let (broker, _) = start(1);
    let consumer = broker.client("batch-consumer").unwrap();
    consumer.subscribe("batch/#").unwrap();
    let producer = broker.client("batch-producer").unwrap();
    let mut batch = Vec::new();
    assert_eq!(consumer.recv_batch(&mut batch, QUIET).unwrap(), 0, "nothing queued: a time-out");
    for i in 0..1000u32 {
        assert_eq!(producer.publish("batch/n", &i.to_be_bytes()).unwrap(), 1);
    }
    assert_eq!(consumer.recv_batch(&mut batch, WAIT).unwrap(), 1000);
    let got: Vec<u32> = batch.iter().map(|m| u32::from_be_bytes(m.payload().try_into().unwrap())).collect();
    assert_eq!(got, (0..1000).collect::<Vec<_>>());
    // A message published while the consumer waits wakes it.
    batch.clear();
    let waiter = std::thread::spawn(move || {
        let n = consumer.recv_batch(&mut batch, WAIT).unwrap();
        (n, batch)
    });
    std::thread::sleep(QUIET);
    producer.publish("batch/late", b"late").unwrap();
    let (n, batch) = waiter.join().unwrap();
    assert_eq!((n, batch[0].topic()), (1, "batch/late"));
    shutdown_within_wait(broker);
}

#[test]
fn recv_many_reads_stored_small_large_and_network_messages_in_order() {
    let (broker, endpoint) = start(2);
    let producer = broker.client("producer").unwrap();
    producer.publish_retained("mix/value", b"stored").unwrap();
    let consumer = broker.client("consumer").unwrap();
    consumer.subscribe("mix/#").unwrap();
    let mut device = RawClient::connect(&endpoint, "device");
    // Small messages are copied into the queue, large ones shared: both
    // kinds, from both faces, come out in the order they went in.
    let large = vec![7u8; 4096];
    producer.publish("mix/a", b"small").unwrap();
    producer.publish("mix/a", &large).unwrap();
    device.publish("mix/b", b"over tcp");
    device.ping(); // the loop has queued the device's message
    producer.publish_many("mix/a", [&b"after"[..], b""]).unwrap();

    let mut batch = ReceivedBatch::new();
    let mut got = Vec::new();
    while got.len() < 6 {
        assert!(consumer.recv_many(&mut batch, WAIT).unwrap() > 0, "{} messages came", got.len());
        assert_eq!(batch.len(), batch.iter().count());
        got.extend(batch.iter().map(|m| {
            assert!(m.updated_time() > 1_700_000_000, "stamped with the time: {}", m.updated_time());
            (m.topic().to_owned(), m.payload().to_vec(), m.from().to_owned(), m.is_retained(), m.ip().is_some())
        }));
    }
    let expected = [
        ("mix/value", &b"stored"[..], "producer", true, false),
        ("mix/a", b"small", "producer", false, false),
        ("mix/a", &large, "producer", false, false),
        ("mix/b", b"over tcp", "device", false, true),
        ("mix/a", b"after", "producer", false, false),
        ("mix/a", b"", "producer", false, false),
    ]
    .map(|(t, p, f, r, ip)| (t.to_owned(), p.to_vec(), f.to_owned(), r, ip));
    assert_eq!(got, expected);

    // An owned copy outlives the batch and carries the same message.
    producer.publish("mix/a", b"kept").unwrap();
    consumer.recv_many(&mut batch, WAIT).unwrap();
    let kept = batch.iter().next().unwrap().to_received();
    consumer.recv_many(&mut batch, QUIET).unwrap();
    assert_eq!((kept.topic(), kept.payload(), kept.from()), ("mix/a", &b"kept"[..], "producer"));
    assert_eq!(kept.message().payload.as_ref(), b"kept");
    shutdown_within_wait(broker);
}

#[test]
fn recv_many_replaces_the_batch_and_reports_a_takeover_after_the_queued_messages() {
    let (broker, _) = start(1);
    let consumer = broker.client("consumer").unwrap();
    consumer.subscribe("t").unwrap();
    let producer = broker.client("producer").unwrap();
    let mut batch = ReceivedBatch::new();
    let payloads = |batch: &ReceivedBatch| batch.iter().map(|m| m.payload().to_vec()).collect::<Vec<_>>();
    for payload in [b"1", b"2", b"3"] {
        producer.publish("t", payload).unwrap();
    }
    assert_eq!(consumer.recv_many(&mut batch, WAIT).unwrap(), 3);
    assert_eq!(payloads(&batch), [b"1", b"2", b"3"]);
    producer.publish_many("t", [b"4", b"5"]).unwrap();
    assert_eq!(consumer.recv_many(&mut batch, WAIT).unwrap(), 2);
    assert_eq!(payloads(&batch), [b"4", b"5"], "the batch holds only what this call took");
    assert_eq!(consumer.recv_many(&mut batch, QUIET).unwrap(), 0, "nothing queued: a time-out");
    assert!(batch.is_empty());

    producer.publish("t", b"6").unwrap();
    let _new = broker.client("consumer").unwrap();
    assert_eq!(consumer.recv_many(&mut batch, WAIT).unwrap(), 1, "queued before the takeover, still delivered");
    assert_eq!(payloads(&batch), [b"6"]);
    let ended = consumer.recv_many(&mut batch, WAIT);
    assert!(matches!(ended, Err(Error::SessionClosed(ReasonCode::SessionTakenOver))), "{ended:?}");
    shutdown_within_wait(broker);
}

fn with_local_queue(limit: usize, wait: Duration) -> Broker {
    let config = tinymq_net::BrokerConfig { local_queue_limit: limit, local_queue_wait: wait, ..Default::default() };
    Broker::builder().config(config).threads(1).start().unwrap()
}

#[test]
fn an_in_process_subscriber_slower_than_its_publisher_slows_it_instead_of_losing_messages() {
    let broker = with_local_queue(100, Duration::from_secs(60));
    let consumer = broker.client("slow").unwrap();
    consumer.subscribe("t").unwrap();
    let producer = broker.client("fast").unwrap();
    // Small messages (copied into the queue) and large ones (shared).
    let large = vec![1u8; 10_000];
    let reader = std::thread::spawn(move || {
        let mut batch = ReceivedBatch::new();
        let mut got = Vec::new();
        while got.len() < 3000 {
            assert!(consumer.recv_many(&mut batch, WAIT).unwrap() > 0, "{} came", got.len());
            got.extend(batch.iter().map(|m| (m.payload().len(), m.payload()[..4].to_vec())));
            std::thread::sleep(Duration::from_millis(2)); // slower than the publisher
        }
        got
    });
    for i in 0..2000u32 {
        producer.publish("t", &i.to_be_bytes()).unwrap();
    }
    let mut large_batch = vec![large.clone(); 10];
    for i in 2000..3000u32 {
        let slot = &mut large_batch[i as usize % 10];
        slot[..4].copy_from_slice(&i.to_be_bytes());
        if i % 10 == 9 {
            producer.publish_many("t", &large_batch).unwrap();
        }
    }
    let got = reader.join().unwrap();
    let expected: Vec<_> =
        (0..3000u32).map(|i| (if i < 2000 { 4 } else { large.len() }, i.to_be_bytes().to_vec())).collect();
    assert_eq!(got, expected, "every message, in order");
    assert_eq!(broker.stats().local_queue_drops, 0);
    shutdown_within_wait(broker);
}

#[test]
fn a_subscriber_that_stopped_reading_holds_its_publisher_up_once_then_loses_the_oldest() {
    let wait = Duration::from_millis(300);
    let broker = with_local_queue(10, wait);
    let consumer = broker.client("stopped").unwrap();
    consumer.subscribe("t").unwrap();
    let producer = broker.client("producer").unwrap();
    for i in 0..10u32 {
        producer.publish("t", &i.to_be_bytes()).unwrap();
    }
    let started = std::time::Instant::now();
    producer.publish("t", &10u32.to_be_bytes()).unwrap();
    assert!(started.elapsed() >= wait, "the publish waited for room: {:?}", started.elapsed());
    // Until the subscriber reads again, a full queue drops without waiting.
    let started = std::time::Instant::now();
    for i in 11..31u32 {
        producer.publish("t", &i.to_be_bytes()).unwrap();
    }
    assert!(started.elapsed() < wait * 10, "20 publishes did not each wait: {:?}", started.elapsed());
    let mut batch = ReceivedBatch::new();
    assert_eq!(consumer.recv_many(&mut batch, WAIT).unwrap(), 10);
    let first = u32::from_be_bytes(batch.iter().next().unwrap().payload().try_into().unwrap());
    assert_eq!(first, 21, "the newest ten were kept");
    assert_eq!(broker.stats().local_queue_drops, 21);
    // Having read, it is waited for again.
    for i in 0..10u32 {
        producer.publish("t", &i.to_be_bytes()).unwrap();
    }
    let started = std::time::Instant::now();
    producer.publish("t", b"again").unwrap();
    assert!(started.elapsed() >= wait, "waited again after the subscriber read: {:?}", started.elapsed());
    shutdown_within_wait(broker);
}

#[test]
fn an_in_process_queue_over_its_byte_limit_drops_its_oldest_but_keeps_the_newest() {
    let config = tinymq_net::BrokerConfig {
        local_queue_bytes: 10 * 1024,
        local_queue_wait: Duration::ZERO,
        ..Default::default()
    };
    let broker = Broker::builder().config(config).threads(1).start().unwrap();
    let consumer = broker.client("consumer").unwrap();
    consumer.subscribe("t").unwrap();
    let producer = broker.client("producer").unwrap();
    for i in 0..20u8 {
        producer.publish("t", &[i; 1024]).unwrap();
    }
    let mut batch = ReceivedBatch::new();
    assert_eq!(consumer.recv_many(&mut batch, WAIT).unwrap(), 10, "10 KiB of 1 KiB messages");
    assert_eq!(batch.iter().map(|m| m.payload()[0]).collect::<Vec<_>>(), (10..20).collect::<Vec<_>>());
    assert_eq!(broker.stats().local_queue_drops, 10);
    // One message larger than the whole limit still arrives, alone: the
    // ten before it make room.
    for i in 0..10u8 {
        producer.publish("t", &[i; 1024]).unwrap();
    }
    producer.publish("t", &[7; 100 * 1024]).unwrap();
    assert_eq!(consumer.recv_many(&mut batch, WAIT).unwrap(), 1);
    assert_eq!(batch.iter().next().unwrap().payload().len(), 100 * 1024);
    let stats = broker.stats();
    assert_eq!(stats.local_queue_drops, 20);
    assert_eq!(stats.messages_out, 31, "each message counts once as it is queued, dropped later or not");
    shutdown_within_wait(broker);
}

#[test]
fn an_in_process_subscriber_slower_than_a_network_publisher_slows_it_instead_of_losing_messages() {
    let config = tinymq_net::BrokerConfig { local_queue_limit: 20_000, ..Default::default() };
    let broker =
        Broker::builder().config(config).listen_tcp("127.0.0.1:0".parse().unwrap()).threads(1).start().unwrap();
    let endpoint = Endpoint::Tcp(broker.tcp_addr().unwrap());
    let consumer = broker.client("slow").unwrap();
    consumer.subscribe("flood").unwrap();
    // 40,000 messages of 1 KiB, twice the queue, read in batches with a
    // 100 ms pause after each: read at the broker's speed they would
    // overflow the queue before the first pause is over. Read one 64 KiB
    // chunk per millisecond while it is over half full, the publisher adds
    // some 6,400 per pause, well within the other half.
    const MESSAGES: u32 = 40_000;
    let reader = std::thread::spawn(move || {
        let mut batch = ReceivedBatch::new();
        let mut next = 0u32;
        while next < MESSAGES {
            assert!(consumer.recv_many(&mut batch, WAIT).unwrap() > 0, "{next} came");
            for message in &batch {
                assert_eq!(message.payload()[..4], next.to_be_bytes(), "in order, none lost");
                next += 1;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let mut publisher = RawClient::connect(&endpoint, "fast");
    let mut payload = vec![0x5a; 1024];
    for i in 0..MESSAGES {
        payload[..4].copy_from_slice(&i.to_be_bytes());
        publisher.publish("flood", &payload);
    }
    reader.join().unwrap();
    assert_eq!(broker.stats().local_queue_drops, 0);
    shutdown_within_wait(broker);
}

#[test]
fn dropping_a_subscriber_releases_a_publisher_waiting_for_room() {
    let broker = with_local_queue(1, Duration::from_secs(600));
    let consumer = broker.client("gone").unwrap();
    consumer.subscribe("t").unwrap();
    let producer = std::sync::Arc::new(broker.client("producer").unwrap());
    producer.publish("t", b"fills the queue").unwrap();
    let (done, finished) = mpsc::channel();
    let waiting = producer.clone();
    std::thread::spawn(move || {
        let _ = done.send(waiting.publish("t", b"waits for room"));
    });
    drop(consumer);
    let published = finished.recv_timeout(WAIT).expect("the waiting publish returned");
    assert!(published.is_ok(), "{published:?}");
    shutdown_within_wait(broker);
}

#[test]
fn a_network_subscriber_slower_than_an_in_process_publisher_slows_it_instead_of_being_cut() {
    let broker = Broker::builder().listen_tcp("127.0.0.1:0".parse().unwrap()).threads(2).start().unwrap();
    let endpoint = Endpoint::Tcp(broker.tcp_addr().unwrap());
    let mut slow = RawClient::connect(&endpoint, "slow");
    slow.subscribe("flood");
    let producer = broker.client("fast").unwrap();
    // 64 MiB, four times the 16 MiB outbound limit, to a subscriber that
    // pauses after each message: queued at the publisher's speed it would
    // be cut with Disconnect 7.
    const MESSAGES: u8 = 64;
    let sender = std::thread::spawn(move || {
        let mut payload = vec![0x5a; 1 << 20];
        for i in 0..MESSAGES {
            payload[0] = i;
            producer.publish("flood", &payload).unwrap();
        }
    });
    for i in 0..MESSAGES {
        let message = slow.recv_publish();
        assert_eq!((message.payload.len(), message.payload[0]), (1 << 20, i), "message {i} in order, whole");
        std::thread::sleep(Duration::from_millis(5));
    }
    sender.join().unwrap();
    shutdown_within_wait(broker);
}

#[test]
fn publish_many_reaches_in_process_and_tcp_subscribers_in_order() {
    let (broker, endpoint) = start(2);
    let local = broker.client("local-sub").unwrap();
    local.subscribe("many/#").unwrap();
    let mut remotes: Vec<RawClient> = (0..3).map(|i| RawClient::connect(&endpoint, &format!("remote-{i}"))).collect();
    for remote in &mut remotes {
        remote.subscribe("many/#");
    }
    let producer = broker.client("producer").unwrap();
    let payloads: Vec<[u8; 4]> = (0..500u32).map(u32::to_be_bytes).collect();
    assert_eq!(producer.publish_many("many/n", &payloads).unwrap(), 4, "each message reaches all four");
    // An empty batch publishes nothing and still says who it would reach.
    assert_eq!(producer.publish_many("many/n", std::iter::empty::<&[u8]>()).unwrap(), 4);
    producer.publish("many/end", b"end").unwrap();
    let mut got = Vec::new();
    while got.last().is_none_or(|m: &tinymq_net::Received| m.topic() != "many/end") {
        assert!(local.recv_batch(&mut got, WAIT).unwrap() > 0, "the in-process subscriber got {}", got.len());
    }
    let expected: Vec<Vec<u8>> = payloads.iter().map(|p| p.to_vec()).chain([b"end".to_vec()]).collect();
    assert_eq!(got.iter().map(|m| m.payload().to_vec()).collect::<Vec<_>>(), expected);
    for remote in &mut remotes {
        for payload in &expected {
            assert_eq!(&remote.recv_publish().payload, payload);
        }
    }
    shutdown_within_wait(broker);
}

#[test]
fn publish_many_with_one_payload_too_large_publishes_none_of_the_batch() {
    let broker = Broker::builder().threads(1).start().unwrap();
    let sub = broker.client("sub").unwrap();
    sub.subscribe("t").unwrap();
    let producer = broker.client("producer").unwrap();
    let big = vec![0u8; (1 << 20) + 1];
    let batch: [&[u8]; 3] = [b"first", &big, b"third"];
    assert!(matches!(producer.publish_many("t", batch), Err(Error::PayloadTooLarge { .. })));
    producer.publish("t", b"after").unwrap();
    let mut got = Vec::new();
    sub.recv_batch(&mut got, WAIT).unwrap();
    assert_eq!(got.iter().map(|m| m.payload()).collect::<Vec<_>>(), [b"after"]);
    shutdown_within_wait(broker);
}

#[test]
fn a_batch_larger_than_the_in_process_queue_keeps_its_newest_messages() {
    let config = tinymq_net::BrokerConfig { local_queue_limit: 100, ..Default::default() };
    let broker = Broker::builder().config(config).threads(1).start().unwrap();
    let sub = broker.client("sub").unwrap();
    sub.subscribe("t").unwrap();
    let producer = broker.client("producer").unwrap();
    let payloads: Vec<[u8; 4]> = (0..250u32).map(u32::to_be_bytes).collect();
    producer.publish_many("t", &payloads).unwrap();
    let mut got = Vec::new();
    assert_eq!(sub.recv_batch(&mut got, WAIT).unwrap(), 100);
    let first = u32::from_be_bytes(got[0].payload().try_into().unwrap());
    assert_eq!(first, 150, "the oldest 150 made room");
    assert_eq!(broker.stats().local_queue_drops, 150);
    shutdown_within_wait(broker);
}
