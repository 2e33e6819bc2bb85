//! A raw protocol client over real sockets ([`RawClient`]): frames in and
//! out as bytes, with deadlines, for tests that need every byte in hand.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use tinymq_core::codec::parse_reason;
use tinymq_core::{Decoded, Decoder, Frame, FrameLimits, FrameType, ReasonCode};

use super::{Endpoint, WAIT};

/// The transports a raw client speaks over.
#[derive(Debug)]
pub enum Stream {
    /// TCP.
    Tcp(TcpStream),
    /// A Unix domain socket.
    Unix(UnixStream),
}

impl Stream {
    fn set_read_timeout(&self, timeout: Duration) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_read_timeout(Some(timeout)),
            Stream::Unix(s) => s.set_read_timeout(Some(timeout)),
        }
    }

    fn shutdown_write(&self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.shutdown(Shutdown::Write),
            Stream::Unix(s) => s.shutdown(Shutdown::Write),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// An owned copy of a frame the broker sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    /// The type byte as sent, flags included (0x82: Publish with RETAIN).
    pub type_byte: u8,
    /// The frame type.
    pub kind: FrameType,
    /// The topic.
    pub topic: String,
    /// The payload.
    pub payload: Vec<u8>,
    /// The client id.
    pub client_id: String,
}

impl Received {
    /// The reason code of a Disconnect or refused ack, with its text.
    pub fn reason(&self) -> Option<(u8, String)> {
        parse_reason(&self.payload).map(|(code, text)| (code, text.to_owned()))
    }

    /// Whether the RETAIN flag is set.
    pub fn retain(&self) -> bool {
        self.type_byte & 0x80 != 0
    }
}

/// What reading the next frame came to.
#[derive(Debug)]
pub enum Next {
    /// A whole frame.
    Frame(Received),
    /// Nothing whole within the time given.
    Timeout,
    /// The broker closed the connection (EOF or reset) with no partial
    /// frame left over.
    Closed,
}

/// A raw protocol client: writes bytes, reads frames with a timeout,
/// decoding incrementally. Every helper panics with context on anything
/// unexpected.
#[derive(Debug)]
pub struct RawClient {
    stream: Stream,
    buf: Vec<u8>,
    /// The session's client id, from the ConnAck (empty before it).
    pub client_id: String,
}

impl RawClient {
    /// A socket to `endpoint` with nothing sent yet.
    pub fn open(endpoint: &Endpoint) -> Self {
        let stream = endpoint.open().unwrap_or_else(|e| panic!("connect to {endpoint:?}: {e}"));
        RawClient { stream, buf: Vec::new(), client_id: String::new() }
    }

    /// A raw client over a TCP connection already open.
    pub fn from_tcp(stream: TcpStream) -> Self {
        RawClient { stream: Stream::Tcp(stream), buf: Vec::new(), client_id: String::new() }
    }

    /// Opens a socket, sends Connect with `client_id` and checks the
    /// ConnAck: every field empty but the client id, which is the one asked
    /// for, or an assigned, non-empty one when `client_id` is empty.
    pub fn connect(endpoint: &Endpoint, client_id: &str) -> Self {
        let mut client = Self::open(endpoint);
        client.send(&Frame::connect(client_id, b""));
        let ack = client.recv();
        assert_eq!((ack.type_byte, ack.topic.as_str(), ack.payload.as_slice()), (0x01, "", &[][..]), "{ack:?}");
        if client_id.is_empty() {
            assert!(!ack.client_id.is_empty(), "an empty client id is assigned one: {ack:?}");
        } else {
            assert_eq!(ack.client_id, client_id, "ConnAck carries the requested id");
        }
        client.client_id = ack.client_id;
        client
    }

    /// Opens a socket and connects with credentials (`user 0x00 password`
    /// in Connect's payload); checks the ConnAck carries `client_id`.
    pub fn connect_as(endpoint: &Endpoint, client_id: &str, username: &str, password: &str) -> Self {
        let mut client = Self::open(endpoint);
        client.send(&Frame::connect(client_id, format!("{username}\0{password}").as_bytes()));
        let ack = client.recv();
        assert_eq!(
            (ack.type_byte, ack.topic.as_str(), ack.payload.as_slice(), ack.client_id.as_str()),
            (0x01, "", &[][..], client_id),
            "{username}: ConnAck expected, got {ack:?} ({:?})",
            ack.reason()
        );
        client.client_id = ack.client_id;
        client
    }

    /// Sends one frame.
    pub fn send(&mut self, frame: &Frame<'_>) {
        self.send_bytes(&frame.to_vec());
    }

    /// Sends raw bytes.
    pub fn send_bytes(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap_or_else(|e| panic!("write to the broker: {e}"));
    }

    /// Tries to send raw bytes; the broker may have closed the connection.
    pub fn try_send_bytes(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Closes the write half: the broker sees EOF.
    pub fn shutdown_write(&self) {
        self.stream.shutdown_write().expect("shutdown(SHUT_WR)");
    }

    /// Closes the write half, if the connection is still there.
    pub fn try_shutdown_write(&self) -> io::Result<()> {
        self.stream.shutdown_write()
    }

    /// The next frame, or what happened instead within `timeout`.
    pub fn next_within(&mut self, timeout: Duration) -> Next {
        // Wide limits: the client must never refuse what the broker sends.
        let decoder = Decoder::new(FrameLimits {
            max_topic_len: u16::MAX.into(),
            max_payload_len: 64 << 20,
            max_client_id_len: u16::MAX.into(),
        });
        let deadline = Instant::now() + timeout;
        loop {
            match decoder.decode(&self.buf) {
                Ok(Decoded::Frame { frame, consumed }) => {
                    let received = Received {
                        type_byte: self.buf[0],
                        kind: frame.kind,
                        topic: frame.topic.to_owned(),
                        payload: frame.payload.to_vec(),
                        client_id: frame.client_id.to_owned(),
                    };
                    self.buf.drain(..consumed);
                    return Next::Frame(received);
                }
                Ok(Decoded::Incomplete { .. }) => {}
                Err(error) => panic!("the broker sent a malformed frame ({error}): {:02x?}", self.buf),
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Next::Timeout;
            }
            self.stream.set_read_timeout(left).expect("set a read timeout");
            let mut chunk = [0u8; 64 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => return self.closed(),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // A close with our own bytes unread by the broker is a reset
                // on Linux; it still ends the connection.
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return self.closed(),
                Err(e) => panic!("read from the broker: {e}"),
            }
        }
    }

    fn closed(&self) -> Next {
        assert!(self.buf.is_empty(), "the connection ended inside a frame: {:02x?}", self.buf);
        Next::Closed
    }

    /// The next frame; panics unless one arrives within [`WAIT`].
    pub fn recv(&mut self) -> Received {
        match self.next_within(WAIT) {
            Next::Frame(frame) => frame,
            other => panic!("{:?}: expected a frame within {WAIT:?}, got {other:?}", self.client_id),
        }
    }

    /// The next frame, which must be a Publish delivery.
    pub fn recv_publish(&mut self) -> Received {
        let frame = self.recv();
        assert_eq!(frame.kind, FrameType::Publish, "{:?}: expected a delivery, got {frame:?}", self.client_id);
        frame
    }

    /// Asserts that no frame arrives, and the connection stays open, for
    /// `window`.
    pub fn expect_silence(&mut self, window: Duration) {
        match self.next_within(window) {
            Next::Timeout => {}
            other => panic!("{:?}: expected nothing for {window:?}, got {other:?}", self.client_id),
        }
    }

    /// Reads until a Disconnect arrives (only deliveries may come before
    /// it), asserts its reason code and its shape (one reason byte, UTF-8
    /// text, other fields empty), then asserts the broker closes the
    /// connection. Returns the text.
    pub fn expect_disconnect(&mut self, reason: ReasonCode) -> String {
        let disconnect = loop {
            match self.next_within(WAIT) {
                Next::Frame(frame) if frame.kind == FrameType::Disconnect => break frame,
                Next::Frame(frame) if frame.kind == FrameType::Publish => continue,
                other => panic!("{:?}: expected Disconnect {reason:?}, got {other:?}", self.client_id),
            }
        };
        assert_eq!(disconnect.type_byte, FrameType::Disconnect as u8, "{disconnect:?}");
        assert_eq!((disconnect.topic.as_str(), disconnect.client_id.as_str()), ("", ""), "{disconnect:?}");
        let (code, text) = disconnect.reason().unwrap_or_else(|| panic!("a reason byte and UTF-8: {disconnect:?}"));
        assert_eq!(code, reason as u8, "Disconnect {reason:?} expected, got {code} {text:?}");
        self.expect_closed();
        text
    }

    /// Asserts the broker closes the connection within [`WAIT`] without
    /// sending another frame.
    pub fn expect_closed(&mut self) {
        match self.next_within(WAIT) {
            Next::Closed => {}
            other => panic!("{:?}: expected the broker to close the connection, got {other:?}", self.client_id),
        }
    }

    /// Subscribes and checks the accepting SubAck (the filter echoed, an
    /// empty payload).
    pub fn subscribe(&mut self, filter: &str) {
        self.send(&Frame::with_topic(FrameType::Subscribe, filter));
        let ack = self.recv();
        assert_eq!(
            (ack.type_byte, ack.topic.as_str(), ack.payload.as_slice(), ack.client_id.as_str()),
            (FrameType::SubAck as u8, filter, &[][..], ""),
            "{:?}: SubAck accepting {filter:?}",
            self.client_id
        );
    }

    /// Unsubscribes and checks the accepting UnsubAck.
    pub fn unsubscribe(&mut self, filter: &str) {
        self.send(&Frame::with_topic(FrameType::Unsubscribe, filter));
        let ack = self.recv();
        assert_eq!(
            (ack.type_byte, ack.topic.as_str(), ack.payload.as_slice()),
            (FrameType::UnsubAck as u8, filter, &[][..]),
            "{:?}: UnsubAck accepting {filter:?}",
            self.client_id
        );
    }

    /// Publishes (live traffic). The client id sent is a forgery the broker
    /// must ignore.
    pub fn publish(&mut self, topic: &str, payload: &[u8]) {
        self.send(&Frame::publish(topic, payload, "forged-sender", false));
    }

    /// Publishes with RETAIN.
    pub fn publish_retained(&mut self, topic: &str, payload: &[u8]) {
        self.send(&Frame::publish(topic, payload, "forged-sender", true));
    }

    /// Ping, and the next frame must be Pong. The broker handles a
    /// connection's frames in order, so this also proves it has handled
    /// everything sent before.
    pub fn ping(&mut self) {
        self.send(&Frame::empty(FrameType::Ping));
        let pong = self.recv();
        assert_eq!(
            (pong.type_byte, pong.topic.as_str(), pong.payload.as_slice(), pong.client_id.as_str()),
            (FrameType::Pong as u8, "", &[][..], ""),
            "{:?}: Pong expected",
            self.client_id
        );
    }
}
