//! End-to-end tests of the embedding API: a broker inside the test
//! process, reached by in-process clients and by the network client over
//! real sockets.

use std::time::Duration;

use tinymq_core::ReasonCode;
use tinymq_net::{Address, Broker, Client, ClientOptions, Error};

const WAIT: Duration = Duration::from_secs(5);

fn tcp_client(broker: &Broker, id: &str) -> Client {
    let address = Address::from(broker.tcp_addr().expect("a TCP listener"));
    Client::connect(ClientOptions::new(address).client_id(id).reconnect(false)).expect("connect")
}

#[test]
fn in_process_and_tcp_clients_share_one_broker() {
    let broker = Broker::builder().listen_tcp("127.0.0.1:0".parse().unwrap()).threads(2).start().unwrap();
    let local = broker.client("service").unwrap();
    local.subscribe("to-service/#").unwrap();
    let mut remote = tcp_client(&broker, "device");
    remote.subscribe("to-device").unwrap();

    remote.publish("to-service/status", b"ready", false).unwrap();
    let got = local.recv_timeout(WAIT).unwrap().expect("a message for the service");
    assert_eq!(
        (got.topic(), got.payload(), got.from(), got.is_retained()),
        ("to-service/status", &b"ready"[..], "device", false)
    );

    assert_eq!(local.publish("to-device", b"go").unwrap(), 1, "one subscriber reached");
    let got = remote.recv_timeout(WAIT).unwrap().expect("a message for the device");
    assert_eq!((got.topic.as_str(), got.payload.as_slice(), got.from.as_str()), ("to-device", &b"go"[..], "service"));

    // A retained value set in-process reaches a later TCP subscriber,
    // flagged as retained.
    local.publish_retained("config/rate", b"10").unwrap();
    remote.subscribe("config/#").unwrap();
    let got = remote.recv_timeout(WAIT).unwrap().expect("the retained value");
    assert!(got.retained);
    assert_eq!(got.payload, b"10");

    assert_eq!(local.try_recv().unwrap().map(|m| m.topic().to_owned()), None);
    broker.shutdown();
}

#[test]
fn in_process_clients_validate_what_they_send() {
    let broker = Broker::builder().threads(1).start().unwrap();
    let client = broker.client("").unwrap();
    assert!(!client.client_id().is_empty(), "an id is assigned");
    assert!(matches!(client.publish("a/+", b"x"), Err(Error::InvalidTopic { .. })));
    assert!(matches!(client.subscribe("a/#/b"), Err(Error::InvalidTopic { .. })));
    let big = vec![0u8; (1 << 20) + 1];
    assert!(matches!(client.publish("a", &big), Err(Error::PayloadTooLarge { .. })));
    broker.shutdown();
}

#[test]
fn shutdown_tells_network_clients_and_ends_in_process_ones() {
    let broker = Broker::builder().listen_tcp("127.0.0.1:0".parse().unwrap()).start().unwrap();
    let local = broker.client("local").unwrap();
    let mut remote = tcp_client(&broker, "remote");
    remote.subscribe("x").unwrap();
    let waiter = std::thread::spawn(move || local.recv_timeout(Duration::from_secs(30)));
    broker.shutdown();
    // shutdown() returned: every broker thread has stopped.
    match remote.recv_timeout(WAIT) {
        Err(error) => assert_eq!(error.reason_code(), Some(ReasonCode::ShuttingDown), "{error}"),
        Ok(message) => panic!("expected the broker's Disconnect 6, got {message:?}"),
    }
    let ended = waiter.join().unwrap();
    assert!(matches!(ended, Err(Error::SessionClosed(ReasonCode::ShuttingDown))), "{ended:?}");
}
