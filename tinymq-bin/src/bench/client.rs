//! One blocking bench connection speaking tinymq, NATS or MQTT 3.1.1
//! (QoS 0), behind the few operations the workload driver needs: connect,
//! subscribe and wait for the confirmation, encode a publish into a batch,
//! read deliveries in place, and a ping round trip as a barrier.
//!
//! The protocols themselves are pure functions matched on [`Protocol`]
//! (`protocol.rs`); [`Client`] owns the socket and the read buffer.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use rustls::{ClientConnection, StreamOwned};
use tinymq_core::{Decoder, FrameLimits};

use super::event::Event;
use super::protocol::Protocol;
use super::workload::Settings;
use super::{mqtt, nats};
use crate::broker::Network;

/// A blocking socket.
pub enum Conn {
    Tcp(TcpStream),
    Unix(UnixStream),
    /// Blocking TLS: the handshake happens in the first reads and writes.
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Conn {
    fn open(settings: &Settings) -> Result<Conn, String> {
        let io = |e: std::io::Error| e.to_string();
        Ok(match (settings.network, &settings.tls) {
            (Network::Tcp, tls) => {
                let stream = TcpStream::connect(&settings.address).map_err(io)?;
                stream.set_nodelay(true).map_err(io)?;
                match tls {
                    None => Conn::Tcp(stream),
                    Some(tls) => {
                        let name = tinymq_net::ClientTls::server_name(&settings.address)?;
                        let tls = ClientConnection::new(tls.config(), name).map_err(|e| e.to_string())?;
                        Conn::Tls(Box::new(StreamOwned::new(tls, stream)))
                    }
                }
            }
            (Network::Unix, _) => Conn::Unix(UnixStream::connect(&settings.address).map_err(io)?),
        })
    }

    fn set_read_timeout(&self, timeout: Duration) -> std::io::Result<()> {
        match self {
            Conn::Tcp(s) => s.set_read_timeout(Some(timeout)),
            Conn::Unix(s) => s.set_read_timeout(Some(timeout)),
            Conn::Tls(s) => s.sock.set_read_timeout(Some(timeout)),
        }
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.read(buf),
            Conn::Unix(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Conn::Tcp(s) => s.write(buf),
            Conn::Unix(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Conn::Tls(s) => s.flush(),
            _ => Ok(()),
        }
    }
}

/// One connection to the broker, handshake done, with its read buffer.
pub struct Client {
    protocol: Protocol,
    conn: Conn,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    decoder: Decoder,
    /// Answers owed to the server (NATS PONGs, MQTT PUBACKs), written
    /// between reads.
    replies: Vec<u8>,
    /// The MQTT QoS its subscriptions ask for.
    qos: u8,
}

impl Client {
    /// Connects and waits for the broker to accept: ConnAck, CONNACK, or
    /// the PONG that follows NATS's CONNECT.
    pub fn connect(settings: &Settings, client_id: &str) -> Result<Client, String> {
        let mut out = Vec::new();
        settings.protocol.encode_connect(client_id, &mut out);
        Self::connect_with(settings, &out)
    }

    /// [`Client::connect`] with the connect request given, encoded.
    pub fn connect_with(settings: &Settings, connect: &[u8]) -> Result<Client, String> {
        let conn = Conn::open(settings).map_err(|e| format!("cannot connect to {}: {e}", settings.address))?;
        let limits = FrameLimits { max_payload_len: 64 << 20, ..FrameLimits::default() };
        let mut client = Client {
            protocol: settings.protocol,
            conn,
            buf: vec![0; 256 * 1024],
            start: 0,
            end: 0,
            decoder: Decoder::new(limits),
            replies: Vec::new(),
            qos: settings.qos,
        };
        // Over TLS this write and the read below make the handshake.
        client.write(connect)?;
        client.confirm()?;
        Ok(client)
    }

    /// Subscribes to `topic` (already spelled by [`Protocol::topic`]) and
    /// waits for the confirmation: SubAck, SUBACK, or NATS's PONG.
    pub fn subscribe(&mut self, topic: &str, sid: u64) -> Result<(), String> {
        let mut out = Vec::new();
        self.protocol.encode_subscribe(topic, sid, self.qos, &mut out);
        self.write(&out)?;
        self.confirm()
    }

    /// A ping round trip: the broker has read everything sent before it.
    pub fn barrier(&mut self) -> Result<(), String> {
        let mut out = Vec::new();
        self.protocol.encode_ping(&mut out);
        self.write(&out)?;
        self.wait_for(|event| matches!(event, Event::Pong))
    }

    /// Writes all of `bytes` (a batch of frames).
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.conn.write_all(bytes).and_then(|()| self.conn.flush()).map_err(|e| format!("write failed: {e}"))
    }

    pub fn set_read_timeout(&self, timeout: Duration) -> Result<(), String> {
        self.conn.set_read_timeout(timeout).map_err(|e| e.to_string())
    }

    /// Reads and drops what the broker has sent so far without waiting
    /// (a QoS 1 publisher's PUBACKs), so its answers never back up.
    pub fn discard_available(&mut self) -> Result<(), String> {
        let set = |conn: &Conn, nonblocking: bool| match conn {
            Conn::Tcp(s) => s.set_nonblocking(nonblocking),
            Conn::Unix(s) => s.set_nonblocking(nonblocking),
            Conn::Tls(s) => s.sock.set_nonblocking(nonblocking),
        };
        set(&self.conn, true).map_err(|e| e.to_string())?;
        let result = loop {
            match self.conn.read(&mut self.buf[self.end..]) {
                Ok(0) => break Err("the broker closed the connection".to_owned()),
                Ok(n) => {
                    self.end += n;
                    while let Some((_, consumed)) =
                        self.protocol.parse(&self.decoder, &self.buf[self.start..self.end])?
                    {
                        self.start += consumed;
                    }
                    self.buf.copy_within(self.start..self.end, 0);
                    self.end -= self.start;
                    self.start = 0;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break Ok(()),
                Err(e) => break Err(format!("read failed: {e}")),
            }
        };
        set(&self.conn, false).map_err(|e| e.to_string())?;
        result
    }

    /// Waits for the broker's next bytes and returns how many MQTT PUBACKs
    /// came (at least one): a windowed QoS 1 publisher's acknowledgements.
    pub fn read_pubacks(&mut self) -> Result<u64, String> {
        loop {
            let mut acks = 0;
            while let Some((event, consumed)) = self.protocol.parse(&self.decoder, &self.buf[self.start..self.end])? {
                self.start += consumed;
                acks += u64::from(matches!(event, Event::PubAck));
            }
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            if acks > 0 {
                return Ok(acks);
            }
            let n = self.conn.read(&mut self.buf[self.end..]).map_err(|e| format!("read failed: {e}"))?;
            if n == 0 {
                return Err("the broker closed the connection".into());
            }
            self.end += n;
        }
    }

    /// Ends the connection as a well-behaved client does (TLS: close_notify).
    pub fn close(self) {
        if let Conn::Tls(mut s) = self.conn {
            s.conn.send_close_notify();
            let _ = s.conn.complete_io(&mut s.sock);
        }
    }

    /// The socket alone, for a connection kept open but never read again.
    pub fn into_conn(self) -> Conn {
        self.conn
    }

    /// Waits for the answer to a connect or subscribe.
    fn confirm(&mut self) -> Result<(), String> {
        match self.protocol {
            Protocol::Nats => self.wait_for(|event| matches!(event, Event::Pong)),
            Protocol::Tinymq | Protocol::Mqtt => self.wait_for(|event| matches!(event, Event::Ack)),
        }
    }

    fn wait_for(&mut self, wanted: impl Fn(&Event<'_>) -> bool) -> Result<(), String> {
        self.read_events(|event| !wanted(&event))
    }

    /// Delivered payloads to `on_message` until it returns false.
    pub fn read_messages(&mut self, mut on_message: impl FnMut(&[u8]) -> bool) -> Result<(), String> {
        self.read_events(|event| match event {
            Event::Message(payload) => on_message(payload),
            _ => true,
        })
    }

    /// Calls `on_event` for each event until it returns false; answers
    /// NATS PINGs. Errors on EOF, a read error or timeout, or a protocol
    /// error (a Disconnect, -ERR, a refused CONNACK or SUBACK).
    fn read_events(&mut self, mut on_event: impl FnMut(Event<'_>) -> bool) -> Result<(), String> {
        loop {
            while let Some((event, consumed)) = self.protocol.parse(&self.decoder, &self.buf[self.start..self.end])? {
                self.start += consumed;
                if let (Event::Ping, Protocol::Nats) = (&event, self.protocol) {
                    nats::encode_pong(&mut self.replies);
                }
                let event = match event {
                    Event::MessageToAck(payload, packet_id) => {
                        mqtt::encode_puback(packet_id, &mut self.replies);
                        Event::Message(payload)
                    }
                    event => event,
                };
                if !on_event(event) {
                    return self.send_replies();
                }
            }
            self.send_replies()?;
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            if self.end == self.buf.len() {
                // One frame larger than the buffer.
                self.buf.resize(self.buf.len() * 2, 0);
            }
            let n = self.conn.read(&mut self.buf[self.end..]).map_err(|e| format!("read failed: {e}"))?;
            if n == 0 {
                return Err("the broker closed the connection".into());
            }
            self.end += n;
        }
    }

    fn send_replies(&mut self) -> Result<(), String> {
        if !self.replies.is_empty() {
            let replies = std::mem::take(&mut self.replies);
            self.write(&replies)?;
        }
        Ok(())
    }
}
