//! The binary protocol over WebSocket (`GET /ws` on the HTTP listener),
//! from a raw client here: the upgrade, frames split across and joined in
//! WebSocket messages, deliveries both ways with TCP clients, and a text
//! message refused with close code 1003. (MQTT over WebSocket, `GET
//! /mqtt`, is driven by paho in mqtt.rs.)

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use tinymq_core::websocket::{self, FrameDecoder, Message, Opcode, Received};
use tinymq_core::{Decoded, Decoder, Frame, FrameLimits, FrameType};

use crate::support::{BrokerProcess, WAIT};

/// A WebSocket client of `/ws`, reading with deadlines.
struct WsClient {
    stream: TcpStream,
    raw: Vec<u8>,
    frames: Vec<u8>,
    decoder: FrameDecoder,
}

impl WsClient {
    fn open(http: SocketAddr) -> Self {
        let mut stream = TcpStream::connect(http).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let request = "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                       Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
        stream.write_all(request.as_bytes()).unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut byte).expect("the upgrade's response");
            head.push(byte[0]);
        }
        let head = String::from_utf8(head).unwrap();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{head}");
        WsClient { stream, raw: Vec::new(), frames: Vec::new(), decoder: FrameDecoder::client(1 << 20) }
    }

    /// Sends `bytes` as one binary message of `pieces` frames.
    fn send(&mut self, bytes: &[u8], pieces: usize) {
        let mut out = Vec::new();
        let size = bytes.len().div_ceil(pieces).max(1);
        let chunks: Vec<&[u8]> = bytes.chunks(size).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            let opcode = if i == 0 { Opcode::Binary } else { Opcode::Continuation };
            websocket::encode_masked_frame(i + 1 == chunks.len(), opcode, [9, 8, 7, 6], chunk, &mut out);
        }
        self.stream.write_all(&out).unwrap();
    }

    /// The next WebSocket message: `Ok(bytes)` of a binary one, `Err(code)`
    /// of a close.
    fn message(&mut self) -> Result<Vec<u8>, Option<u16>> {
        loop {
            let mut raw = std::mem::take(&mut self.raw);
            let result = match self.decoder.decode(&mut raw).expect("frames from the broker") {
                Received::Partial { .. } => None,
                Received::Frame { consumed, message } => Some((
                    consumed,
                    match message {
                        Some(Message::Binary(bytes)) => Some(Ok(bytes.to_vec())),
                        Some(Message::Close { code, .. }) => Some(Err(code)),
                        _ => None,
                    },
                )),
            };
            if let Some((consumed, message)) = result {
                raw.drain(..consumed);
                self.raw = raw;
                if let Some(message) = message {
                    return message;
                }
                continue;
            }
            self.raw = raw;
            let mut buf = [0u8; 4096];
            let n = self.stream.read(&mut buf).expect("a frame within the deadline");
            assert!(n > 0, "the broker closed the connection");
            self.raw.extend_from_slice(&buf[..n]);
        }
    }

    /// The next binary-protocol frame: its type, topic and payload.
    fn frame(&mut self) -> (FrameType, String, Vec<u8>) {
        let decoder = Decoder::new(FrameLimits::default());
        loop {
            if let Ok(Decoded::Frame { frame, consumed }) = decoder.decode(&self.frames) {
                let got = (frame.kind, frame.topic.to_owned(), frame.payload.to_vec());
                self.frames.drain(..consumed);
                return got;
            }
            let bytes = self.message().expect("a binary message");
            self.frames.extend_from_slice(&bytes);
        }
    }
}

#[test]
fn the_binary_protocol_runs_over_websocket_beside_tcp_clients() {
    let broker = BrokerProcess::start_http(&[]);
    let mut ws = WsClient::open(broker.http_addr());
    // Connect and Subscribe joined in one message, split over three frames.
    let mut hello = Frame::connect("ws-client", b"").to_vec();
    hello.extend(Frame::with_topic(FrameType::Subscribe, "w/#").to_vec());
    ws.send(&hello, 3);
    assert_eq!(ws.frame().0, FrameType::ConnAck);
    let (kind, topic, _) = ws.frame();
    assert_eq!((kind, topic.as_str()), (FrameType::SubAck, "w/#"));

    let mut tcp = broker.connect("tcp-client");
    tcp.subscribe("w/#");
    tcp.publish("w/from-tcp", b"over tcp");
    let (kind, topic, payload) = ws.frame();
    assert_eq!((kind, topic.as_str(), payload.as_slice()), (FrameType::Publish, "w/from-tcp", &b"over tcp"[..]));
    let got = tcp.recv_publish();
    assert_eq!(got.topic, "w/from-tcp", "the TCP client hears itself too");

    // A publish split across two messages.
    let publish = Frame::publish("w/from-ws", b"over websocket", "", false).to_vec();
    let (first, second) = publish.split_at(5);
    ws.send(first, 1);
    ws.send(second, 2);
    let got = tcp.recv_publish();
    assert_eq!(
        (got.topic.as_str(), got.payload.as_slice(), got.client_id.as_str()),
        ("w/from-ws", &b"over websocket"[..], "ws-client")
    );
    assert_eq!(ws.frame().1, "w/from-ws");

    // Text messages are not the protocol's: closed with 1003.
    let mut text = Vec::new();
    websocket::encode_masked_frame(true, Opcode::Text, [1, 2, 3, 4], b"hello", &mut text);
    ws.stream.write_all(&text).unwrap();
    assert_eq!(ws.message(), Err(Some(1003)));
    tcp.ping();
}
