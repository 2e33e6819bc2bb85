//! The client against fake brokers on real sockets.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::net::UnixListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;

use tinymq_core::codec::reason_payload;
use tinymq_core::{Decoded, Decoder, Frame, FrameType};

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tinymq_core::ReasonCode;

use super::*;
use crate::ListenAddr;

const WAIT: Duration = Duration::from_secs(5);

/// A frame the fake broker received, owned.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Received {
    kind: FrameType,
    retain: bool,
    topic: String,
    payload: Vec<u8>,
    client_id: String,
}

/// The fake broker's end of one connection: frames in and out with the
/// codec, over a blocking stream.
struct Peer<S> {
    stream: S,
    unread: Vec<u8>,
}

impl<S: Read + Write> Peer<S> {
    fn new(stream: S) -> Self {
        Peer { stream, unread: Vec::new() }
    }

    /// The next frame, or `None` at the end of the stream.
    fn next(&mut self) -> Option<Received> {
        loop {
            if let Decoded::Frame { frame, consumed } = Decoder::default().decode(&self.unread).unwrap() {
                let received = Received {
                    kind: frame.kind,
                    retain: frame.retain,
                    topic: frame.topic.into(),
                    payload: frame.payload.into(),
                    client_id: frame.client_id.into(),
                };
                self.unread.drain(..consumed);
                return Some(received);
            }
            let mut buf = [0; 4096];
            match self.stream.read(&mut buf) {
                Ok(0) | Err(_) => return None,
                Ok(read) => self.unread.extend_from_slice(&buf[..read]),
            }
        }
    }

    fn expect(&mut self, kind: FrameType) -> Received {
        let frame = self.next().unwrap_or_else(|| panic!("connection closed while waiting for {kind:?}"));
        assert_eq!(frame.kind, kind, "{frame:?}");
        frame
    }

    fn send(&mut self, frame: Frame<'_>) {
        self.stream.write_all(&frame.to_vec()).unwrap();
    }

    /// Reads Connect and accepts it under `client_id`; returns the Connect.
    fn accept(&mut self, client_id: &str) -> Received {
        let connect = self.expect(FrameType::Connect);
        self.send(Frame { client_id, ..Frame::empty(FrameType::ConnAck) });
        connect
    }

    /// Reads Subscribe for `filter` and accepts it.
    fn accept_subscribe(&mut self, filter: &str) {
        assert_eq!(self.expect(FrameType::Subscribe).topic, filter);
        self.send(Frame::with_topic(FrameType::SubAck, filter));
    }

    fn disconnect(&mut self, code: ReasonCode) {
        let payload = reason_payload(code, code.text());
        self.send(Frame { payload: &payload, ..Frame::empty(FrameType::Disconnect) });
    }
}

fn tcp_peer(listener: &TcpListener) -> Peer<std::net::TcpStream> {
    let (stream, _) = listener.accept().unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    Peer::new(stream)
}

/// A TCP fake broker running `script` on its listener in a thread.
fn fake_broker(script: impl FnOnce(TcpListener) + Send + 'static) -> (Address, thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = Address::from(listener.local_addr().unwrap());
    (address, thread::spawn(move || script(listener)))
}

fn fast(address: Address) -> ClientOptions {
    ClientOptions::new(address)
        .reconnect_backoff(Duration::from_millis(10), Duration::from_millis(50))
        .connect_timeout(WAIT)
        .request_timeout(WAIT)
}

fn message(topic: &str, payload: &[u8], from: &str, retained: bool) -> ReceivedMessage {
    ReceivedMessage { topic: topic.into(), payload: payload.into(), from: from.into(), retained }
}

#[test]
fn reconnects_and_resubscribes_after_the_broker_closes_the_socket() {
    let (address, broker) = fake_broker(|listener| {
        let mut first = tcp_peer(&listener);
        assert_eq!(first.accept("fake-1").client_id, "", "the first Connect asks for an id");
        first.accept_subscribe("sensors/#");
        first.send(Frame::publish("sensors/a", b"1", "other", false));
        drop(first);

        let mut second = tcp_peer(&listener);
        assert_eq!(second.accept("fake-1").client_id, "fake-1", "the reconnect asks for the assigned id");
        second.accept_subscribe("sensors/#");
        second.send(Frame::publish("sensors/b", b"2", "other", true));
        let publish = second.expect(FrameType::Publish);
        assert_eq!((publish.topic.as_str(), &publish.payload[..], publish.retain), ("out", &b"after"[..], true));
        second.expect(FrameType::Disconnect);
        assert_eq!(second.next(), None);
    });

    let mut client = fast(address).connect().unwrap();
    assert_eq!(client.client_id(), "fake-1");
    client.subscribe("sensors/#").unwrap();
    assert_eq!(client.recv_timeout(WAIT).unwrap(), Some(message("sensors/a", b"1", "other", false)));
    // The socket closes here; the client reconnects within recv.
    assert_eq!(client.recv_timeout(WAIT).unwrap(), Some(message("sensors/b", b"2", "other", true)));
    assert!(client.is_connected());
    assert_eq!(client.subscriptions().collect::<Vec<_>>(), ["sensors/#"]);
    client.publish("out", b"after", true).unwrap();
    client.disconnect().unwrap();
    broker.join().unwrap();
}

#[test]
fn a_publish_after_the_broker_left_goes_out_on_the_next_connection() {
    let (closed_tx, closed_rx) = mpsc::channel();
    let (address, broker) = fake_broker(move |listener| {
        let mut first = tcp_peer(&listener);
        first.accept("c");
        drop(first);
        closed_tx.send(()).unwrap();
        let mut second = tcp_peer(&listener);
        second.accept("c");
        let publish = second.expect(FrameType::Publish);
        assert_eq!((publish.topic.as_str(), &publish.payload[..]), ("a/b", &b"kept"[..]));
    });
    let mut client = fast(address).client_id("c").connect().unwrap();
    closed_rx.recv().unwrap();
    thread::sleep(Duration::from_millis(50));
    client.publish("a/b", b"kept", false).unwrap();
    broker.join().unwrap();
}

#[test]
fn a_publish_fails_when_the_broker_stays_away() {
    let (address, broker) = fake_broker(|listener| {
        tcp_peer(&listener).accept("c");
        // Both the connection and the listener go away.
    });
    let options = fast(address).client_id("c").request_timeout(Duration::from_millis(300));
    let mut client = options.connect().unwrap();
    broker.join().unwrap();
    let started = Instant::now();
    let error = client.publish("a", b"x", false).unwrap_err();
    assert!(matches!(error, ClientError::Io(_)), "{error}");
    assert!(started.elapsed() < WAIT);
    assert!(!client.is_connected());
    // Invalid input is refused at once, connected or not.
    assert!(matches!(client.publish("a/#", b"x", false), Err(ClientError::InvalidTopic { .. })));
}

#[test]
fn keep_alive_pings_and_replaces_a_silent_broker() {
    let (address, broker) = fake_broker(|listener| {
        let mut silent = tcp_peer(&listener);
        silent.accept("c");
        // Pings go unanswered until the client gives up on this connection.
        let mut pings = 0;
        while let Some(frame) = silent.next() {
            assert_eq!(frame.kind, FrameType::Ping);
            pings += 1;
        }
        assert!(pings >= 1);

        let mut live = tcp_peer(&listener);
        live.accept("c");
        live.expect(FrameType::Ping);
        live.send(Frame::empty(FrameType::Pong));
        live.send(Frame::publish("t", b"alive", "x", false));
        live.expect(FrameType::Disconnect);
    });
    let options = fast(address).client_id("c").keep_alive(Duration::from_millis(200));
    let mut client = options.connect().unwrap();
    let started = Instant::now();
    assert_eq!(client.recv_timeout(WAIT).unwrap(), Some(message("t", b"alive", "x", false)));
    // Declared dead after 1.5 × keep-alive of silence, then a Ping after half of it.
    assert!(started.elapsed() >= Duration::from_millis(400), "{:?}", started.elapsed());
    client.disconnect().unwrap();
    broker.join().unwrap();
}

#[test]
fn a_refused_connect_is_an_error() {
    let (address, broker) = fake_broker(|listener| {
        let mut peer = tcp_peer(&listener);
        let connect = peer.expect(FrameType::Connect);
        assert_eq!(connect.payload, b"user\0wrong");
        peer.disconnect(ReasonCode::NotAuthorized);
    });
    let error = fast(address).credentials("user", "wrong").connect().unwrap_err();
    assert!(matches!(&error, ClientError::Refused { code: 2, text } if text == "not authorized"), "{error}");
    assert_eq!(error.reason_code(), Some(ReasonCode::NotAuthorized));
    broker.join().unwrap();
}

#[test]
fn connect_times_out_without_conn_ack() {
    let (address, broker) = fake_broker(|listener| {
        let mut peer = tcp_peer(&listener);
        peer.expect(FrameType::Connect);
        assert_eq!(peer.next(), None);
    });
    let error = fast(address).connect_timeout(Duration::from_millis(200)).connect().unwrap_err();
    assert!(matches!(error, ClientError::Timeout(_)), "{error}");
    broker.join().unwrap();
}

#[test]
fn nothing_listening_is_an_io_error() {
    let address = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let error = ClientOptions::new(address).connect().unwrap_err();
    assert!(matches!(&error, ClientError::Io(e) if e.kind() == io::ErrorKind::ConnectionRefused), "{error}");
}

#[test]
fn a_broker_shutting_down_is_retried_but_a_takeover_is_not() {
    let (address, broker) = fake_broker(|listener| {
        let mut first = tcp_peer(&listener);
        first.accept("c");
        first.disconnect(ReasonCode::ShuttingDown);
        drop(first);
        let mut second = tcp_peer(&listener);
        second.accept("c");
        second.disconnect(ReasonCode::SessionTakenOver);
        drop(second);
        // No third connection comes.
        listener.set_nonblocking(true).unwrap();
        thread::sleep(Duration::from_millis(300));
        assert_eq!(listener.accept().unwrap_err().kind(), io::ErrorKind::WouldBlock);
    });
    let mut client = fast(address).client_id("c").connect().unwrap();
    let error = client.recv_timeout(WAIT).unwrap_err();
    assert!(matches!(&error, ClientError::SessionEnded { code: 3, text } if text == "session taken over"));
    // The client is over: every call says why.
    let again = client.publish("a", b"x", false).unwrap_err();
    assert_eq!(again.reason_code(), Some(ReasonCode::SessionTakenOver));
    assert!(matches!(client.recv_timeout(WAIT), Err(ClientError::SessionEnded { code: 3, .. })));
    broker.join().unwrap();
}

#[test]
fn without_reconnect_a_lost_connection_ends_the_client() {
    let (address, broker) = fake_broker(|listener| {
        let mut peer = tcp_peer(&listener);
        peer.accept("c");
        peer.disconnect(ReasonCode::ShuttingDown);
    });
    let mut client = fast(address).client_id("c").reconnect(false).connect().unwrap();
    let error = client.recv_timeout(WAIT).unwrap_err();
    assert!(matches!(error, ClientError::SessionEnded { code: 6, .. }), "{error}");
    // Later calls give the broker's reason again.
    let again = client.publish("a", b"x", false).unwrap_err();
    assert_eq!(again.reason_code(), Some(ReasonCode::ShuttingDown));
    broker.join().unwrap();

    let (address, broker) = fake_broker(|listener| {
        tcp_peer(&listener).accept("c");
    });
    let mut client = fast(address).client_id("c").reconnect(false).connect().unwrap();
    broker.join().unwrap();
    let error = client.recv_timeout(WAIT).unwrap_err();
    assert!(matches!(&error, ClientError::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof), "{error}");
    assert!(matches!(client.subscribe("a"), Err(ClientError::Closed)));
}

#[test]
fn works_over_a_unix_socket_with_refusals_and_retained_values() {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "tinymq-client-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("broker.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let broker = thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let mut peer = Peer::new(stream);
        peer.accept("unix-1");
        let refused = peer.expect(FrameType::Subscribe);
        let payload = reason_payload(ReasonCode::NotAuthorized, "no access to private/#");
        peer.send(Frame { payload: &payload, ..Frame::with_topic(FrameType::SubAck, &refused.topic) });
        peer.accept_subscribe("lamp/+");
        peer.send(Frame::publish("lamp/kitchen", b"on", "switch", true));
        assert_eq!(peer.expect(FrameType::Unsubscribe).topic, "lamp/+");
        peer.send(Frame::with_topic(FrameType::UnsubAck, "lamp/+"));
        let publish = peer.expect(FrameType::Publish);
        assert_eq!((publish.topic.as_str(), &publish.payload[..]), ("lamp/kitchen", &b"off"[..]));
        peer.expect(FrameType::Disconnect);
    });

    let mut client = fast(Address::unix(&path)).connect().unwrap();
    assert_eq!(client.client_id(), "unix-1");
    let error = client.subscribe("private/#").unwrap_err();
    assert!(matches!(&error, ClientError::Refused { code: 2, text } if text == "no access to private/#"));
    assert_eq!(client.subscriptions().count(), 0);
    client.subscribe("lamp/+").unwrap();
    assert_eq!(client.recv().unwrap(), message("lamp/kitchen", b"on", "switch", true));
    client.unsubscribe("lamp/+").unwrap();
    assert_eq!(client.subscriptions().count(), 0);
    client.publish("lamp/kitchen", b"off", false).unwrap();
    assert_eq!(client.recv_timeout(Duration::ZERO).unwrap(), None);
    client.disconnect().unwrap();
    broker.join().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn talks_to_the_real_broker() {
    let broker = crate::Broker::builder().listen_tcp("127.0.0.1:0".parse().unwrap()).threads(2).start().unwrap();
    let address = Address::from(broker.tcp_addr().unwrap());
    let mut publisher = fast(address.clone()).client_id("pub").connect().unwrap();
    publisher.publish("lamp/kitchen", b"on", true).unwrap();
    let mut subscriber = fast(address.clone()).connect().unwrap();
    let assigned = subscriber.client_id().to_owned();
    assert!(!assigned.is_empty());
    subscriber.subscribe("lamp/+").unwrap();
    assert_eq!(subscriber.recv_timeout(WAIT).unwrap(), Some(message("lamp/kitchen", b"on", "pub", true)));
    publisher.publish("lamp/hall", b"off", false).unwrap();
    assert_eq!(subscriber.recv_timeout(WAIT).unwrap(), Some(message("lamp/hall", b"off", "pub", false)));
    assert!(matches!(subscriber.subscribe("lamp/#/x"), Err(ClientError::InvalidTopic { .. })));

    // Another connection takes the subscriber's id over: not retried.
    let thief = fast(address).client_id(assigned).connect().unwrap();
    let error = subscriber.recv_timeout(WAIT).unwrap_err();
    assert_eq!(error.reason_code(), Some(ReasonCode::SessionTakenOver), "{error}");
    thief.disconnect().unwrap();
    publisher.disconnect().unwrap();
    broker.shutdown();
}

#[test]
fn a_client_can_move_to_another_thread() {
    fn assert_send<T: Send>() {}
    assert_send::<Client>();
}

#[test]
fn address_forms() {
    assert_eq!(Address::tcp("localhost:1883").to_string(), "tcp://localhost:1883");
    assert_eq!(Address::unix("/run/tinymq.sock").to_string(), "unix:///run/tinymq.sock");
    let socket: SocketAddr = "127.0.0.1:9".parse().unwrap();
    assert_eq!(Address::try_from(ListenAddr::Tcp(socket)), Ok(Address::tcp("127.0.0.1:9")));
    assert_eq!(Address::try_from(ListenAddr::Unix("/a".into())), Ok(Address::unix("/a")));
    assert_eq!(Address::try_from(ListenAddr::Http(socket)), Err(ListenAddr::Http(socket)));
}

#[test]
fn options_leave_the_password_out_of_debug() {
    let options = ClientOptions::new(Address::tcp("h:1")).credentials("user", "hunter2");
    assert!(!format!("{options:?}").contains("hunter2"));
}
