//! WebSocket connections: an HTTP connection upgraded on `GET /ws` or
//! `GET /mqtt`, whose stream then carries the binary protocol or MQTT in
//! WebSocket binary messages.
//!
//! [`WsStream`] is a stream layer, as TLS is: reads take the payload out
//! of the peer's frames (the core's [`ByteStream`] answers pings and
//! echoes a close), and each write goes out as one binary message. So the
//! event loop drives a WebSocket connection exactly like a socket that
//! speaks the protocol inside.

use std::io::{self, IoSlice};

use mio::event::Source;
use tinymq_core::websocket::{ByteStream, close_code};

use crate::transport::{Stream, Transport};

/// Bytes accepted for the socket and not sent yet, past which writes wait
/// (`WouldBlock`): the connection's own queue holds the rest, within its
/// limit.
const OUT_LIMIT: usize = 256 * 1024;

/// Read from the socket at a time.
const READ_CHUNK: usize = 16 * 1024;

#[derive(Debug)]
pub(crate) struct WsStream {
    inner: Stream,
    bytes: ByteStream,
    /// Payload decoded and not read yet, from `plain_at`.
    plain: Vec<u8>,
    plain_at: usize,
    /// Bytes for the socket, from `out_at`: what the HTTP connection had
    /// not sent and the 101 first, then control frames and messages.
    out: Vec<u8>,
    out_at: usize,
    /// The socket's end of input, or the WebSocket's close, was seen: once
    /// `plain` is read, reads return 0.
    eof: bool,
    /// What it carries: MQTT, or the binary protocol.
    mqtt: bool,
}

impl WsStream {
    /// Wraps an HTTP connection's stream that just upgraded. `prelude` is
    /// sent first as it is (the 101 response, after any answers still
    /// unsent); `input` is what arrived after the upgrade request.
    pub(crate) fn new(inner: Stream, mqtt: bool, prelude: Vec<u8>, input: &[u8], max_message_size: usize) -> Self {
        let mut stream = WsStream {
            inner,
            bytes: ByteStream::server(max_message_size),
            plain: Vec::new(),
            plain_at: 0,
            out: prelude,
            out_at: 0,
            eof: false,
            mqtt,
        };
        stream.take_input(input);
        stream
    }

    pub(crate) fn transport(&self) -> Transport {
        match (self.mqtt, self.inner.transport()) {
            (false, Transport::Https) => Transport::Wss,
            (false, _) => Transport::Ws,
            (true, Transport::Https) => Transport::MqttWss,
            (true, _) => Transport::MqttWs,
        }
    }

    pub(crate) fn source(&mut self) -> &mut dyn Source {
        self.inner.source()
    }

    fn take_input(&mut self, input: &[u8]) {
        if self.bytes.handle_input(input, &mut self.plain).is_err() {
            self.eof = true;
        }
        let control = self.bytes.take_control();
        self.out.extend_from_slice(&control);
    }

    /// Reads payload bytes into `buf`. Short only when the socket had no
    /// more for now, or at the end.
    pub(crate) fn read(&mut self, buf: &mut [u8], cipher: &mut Vec<u8>) -> io::Result<usize> {
        let mut n = 0;
        let mut chunk = [0u8; READ_CHUNK];
        loop {
            let ready = &self.plain[self.plain_at..];
            let take = ready.len().min(buf.len() - n);
            buf[n..n + take].copy_from_slice(&ready[..take]);
            n += take;
            self.plain_at += take;
            if self.plain_at == self.plain.len() {
                self.plain.clear();
                self.plain_at = 0;
            }
            if n == buf.len() || self.eof {
                return Ok(n);
            }
            match self.inner.read(&mut chunk, cipher) {
                Ok(0) => self.eof = true,
                Ok(read) => {
                    self.take_input(&chunk[..read]);
                    // A short read from the socket: nothing more there now.
                    if read < chunk.len() && !self.inner.has_unreported_eof() && self.plain.is_empty() {
                        return if n > 0 { Ok(n) } else { Err(io::ErrorKind::WouldBlock.into()) };
                    }
                }
                Err(error) if n > 0 && error.kind() == io::ErrorKind::WouldBlock => return Ok(n),
                Err(error) => return if n > 0 { Ok(n) } else { Err(error) },
            }
        }
    }

    /// Whether a read would return more (or the end) without the socket.
    pub(crate) fn has_unreported_eof(&self) -> bool {
        self.eof || self.plain_at < self.plain.len() || self.inner.has_unreported_eof()
    }

    /// Takes what fits of `bufs` as one binary message and sends what the
    /// socket takes now.
    pub(crate) fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        if self.out.len() - self.out_at >= OUT_LIMIT {
            self.send_pending()?;
            if self.out.len() - self.out_at >= OUT_LIMIT {
                return Err(io::ErrorKind::WouldBlock.into());
            }
        }
        let room = OUT_LIMIT - (self.out.len() - self.out_at);
        let total: usize = bufs.iter().map(|b| b.len()).sum::<usize>().min(room);
        self.bytes.frame_header(total, &mut self.out);
        let mut left = total;
        for buf in bufs {
            let take = buf.len().min(left);
            self.out.extend_from_slice(&buf[..take]);
            left -= take;
        }
        match self.send_pending() {
            Ok(()) => Ok(total),
            // Taken all the same: it waits in `out`.
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => Ok(total),
            Err(error) => Err(error),
        }
    }

    pub(crate) fn wants_write(&self) -> bool {
        self.out_at < self.out.len() || self.inner.wants_write()
    }

    /// Sends what waits until done or `WouldBlock`.
    pub(crate) fn send_pending(&mut self) -> io::Result<()> {
        while self.out_at < self.out.len() {
            match self.inner.write_vectored(&[IoSlice::new(&self.out[self.out_at..])]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(sent) => self.out_at += sent,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
        self.out.clear();
        self.out_at = 0;
        self.inner.send_pending()
    }

    pub(crate) fn failed_handshake(&self) -> bool {
        self.inner.failed_handshake()
    }

    /// Sends a close frame (best effort), then shuts the socket's sending
    /// side.
    pub(crate) fn shutdown_write(&mut self) -> io::Result<()> {
        self.say_close();
        self.inner.shutdown_write()
    }

    /// Before the stream is dropped: a close frame (best effort), then the
    /// inner stream's own close.
    pub(crate) fn close(&mut self) {
        self.say_close();
        self.inner.close();
    }

    fn say_close(&mut self) {
        if self.bytes.ended().is_none() {
            self.bytes.close(close_code::NORMAL, "");
        }
        let control = self.bytes.take_control();
        self.out.extend_from_slice(&control);
        let _ = self.send_pending();
    }

    pub(crate) fn shutdown(&mut self) -> io::Result<()> {
        self.say_close();
        self.inner.shutdown()
    }
}
