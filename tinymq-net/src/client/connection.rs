//! One connection of a [`Client`](super::Client): the socket, what it
//! waits for, and why it ended.

use std::fmt;
use std::io::{self, IoSlice};
use std::net::ToSocketAddrs;
use std::time::{Duration, Instant};

use mio::net::{TcpStream, UnixStream};
use mio::{Events, Interest, Poll, Token};
use tinymq_core::ReasonCode;
use tinymq_core::client::{ClientError as SessionError, ClientSession, Reason};

use super::options::{Address, ClientError};
use crate::tls::{ClientTls, TlsFailure, TlsStream};
use crate::transport::Stream;

/// Bytes read from the socket at once.
const READ_CHUNK: usize = 16 * 1024;

/// Why a connection, or an attempt at one, ended.
#[derive(Debug)]
pub(super) enum Lost {
    Io(io::Error),
    /// TLS cannot be set up for the address.
    Tls(String),
    Eof,
    /// The broker sent Disconnect; `accepted` if it had sent ConnAck.
    Broker {
        reason: Reason,
        accepted: bool,
    },
    /// The state machine gave up: the broker broke the protocol or stopped
    /// answering.
    Session(SessionError),
    NoConnAck(Duration),
}

impl Lost {
    /// Whether reconnecting may help: not when the broker refuses this
    /// client's credentials or another connection took its id.
    pub(super) fn is_retried(&self) -> bool {
        match self {
            Lost::Broker { reason, .. } => {
                !matches!(reason.reason_code(), Some(ReasonCode::NotAuthorized | ReasonCode::SessionTakenOver))
            }
            Lost::Tls(_) => false,
            _ => true,
        }
    }

    pub(super) fn into_error(self) -> ClientError {
        match self {
            Lost::Io(error) => match TlsFailure::of(&error) {
                Some(failure) => ClientError::Tls(failure.to_string()),
                None => ClientError::Io(error),
            },
            Lost::Tls(text) => ClientError::Tls(text),
            Lost::Eof => {
                ClientError::Io(io::Error::new(io::ErrorKind::UnexpectedEof, "the broker closed the connection"))
            }
            Lost::Broker { reason: Reason { code, text }, accepted: false } => ClientError::Refused { code, text },
            Lost::Broker { reason: Reason { code, text }, accepted: true } => ClientError::SessionEnded { code, text },
            Lost::Session(error) => ClientError::from_session(error),
            Lost::NoConnAck(waited) => ClientError::Timeout(waited),
        }
    }
}

impl fmt::Display for Lost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Lost::Io(error) => write!(f, "{error}"),
            Lost::Tls(text) => write!(f, "{text}"),
            Lost::Eof => f.write_str("the broker closed the connection"),
            Lost::Broker { reason, .. } => write!(f, "the broker sent Disconnect: {reason}"),
            Lost::Session(error) => write!(f, "{error}"),
            Lost::NoConnAck(waited) => write!(f, "no ConnAck within {waited:?}"),
        }
    }
}

/// Why the client cannot go on.
#[derive(Debug)]
pub(super) enum Ended {
    Refused(Reason),
    Terminated(Reason),
    Closed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum AckKind {
    Subscribe,
    Unsubscribe,
}

impl fmt::Display for AckKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AckKind::Subscribe => "subscription to",
            AckKind::Unsubscribe => "unsubscription from",
        })
    }
}

/// The ack a call waits for, and its result once it came.
#[derive(Debug)]
pub(super) struct AwaitedAck {
    pub(super) kind: AckKind,
    pub(super) filter: String,
    pub(super) result: Option<Result<(), Reason>>,
}

/// A connected socket, non-blocking, with the poll that waits on it.
#[derive(Debug)]
pub(super) struct Connection {
    pub(super) socket: Stream,
    pub(super) poll: Poll,
    pub(super) events: Events,
    /// Scratch space for TLS records before decryption.
    pub(super) cipher: Vec<u8>,
    /// Whether ConnAck came on it.
    pub(super) accepted: bool,
}

impl Connection {
    pub(super) fn new(mut socket: Stream) -> io::Result<Self> {
        let poll = Poll::new()?;
        socket.register(poll.registry(), Token(0), Interest::READABLE | Interest::WRITABLE)?;
        Ok(Connection { socket, poll, events: Events::with_capacity(4), cipher: Vec::new(), accepted: false })
    }

    /// Appends what the socket has to `buf`, waiting for it until `until`
    /// (`None`: for ever). `Ok(None)` when the time is up first, `Ok(Some(0))`
    /// at the end of the stream.
    pub(super) fn read_into(&mut self, buf: &mut Vec<u8>, until: Option<Instant>) -> io::Result<Option<usize>> {
        let start = buf.len();
        buf.resize(start + READ_CHUNK, 0);
        let result = loop {
            match self.socket.read(&mut buf[start..], &mut self.cipher) {
                Ok(read) => break Ok(Some(read)),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => match self.wait(until) {
                    Ok(true) => {}
                    Ok(false) => break Ok(None),
                    Err(error) => break Err(error),
                },
                Err(error) => break Err(error),
            }
        };
        buf.truncate(start + result.as_ref().map_or(0, |read| read.unwrap_or(0)));
        result
    }

    /// Writes everything `session` has queued, waiting for the socket until
    /// `until`.
    pub(super) fn flush(&mut self, session: &mut ClientSession, until: Instant) -> io::Result<()> {
        while let Some(bytes) = session.poll_transmit() {
            match self.socket.write_vectored(&[IoSlice::new(bytes)]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(written) => session.advance_transmit(written),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    if !self.wait(Some(until))? {
                        return Err(io::Error::new(io::ErrorKind::TimedOut, "the broker stopped reading"));
                    }
                }
                Err(error) => return Err(error),
            }
        }
        // TLS records the socket has not taken yet.
        while self.socket.wants_write() {
            match self.socket.send_pending() {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    if !self.wait(Some(until))? {
                        return Err(io::Error::new(io::ErrorKind::TimedOut, "the broker stopped reading"));
                    }
                }
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    /// Waits for the socket to become ready, until `until`. `Ok(false)`
    /// when the time is up. Readiness is edge-triggered: callers try the
    /// operation before waiting, and again after any wake.
    pub(super) fn wait(&mut self, until: Option<Instant>) -> io::Result<bool> {
        let timeout = match until {
            Some(until) => match until.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => Some(left),
                _ => return Ok(false),
            },
            None => None,
        };
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => Ok(true),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => Ok(true),
            Err(error) => Err(error),
        }
    }
}

/// Connects to `address`, blocking until `until` at most (name
/// resolution excepted), then makes the stream non-blocking. The TLS
/// handshake, if any, is left to the first reads and writes.
pub(super) fn connect(address: &Address, tls: Option<&ClientTls>, until: Instant) -> Result<Stream, Lost> {
    match (address, tls) {
        (Address::Tcp(host_port), None) => Ok(Stream::Tcp(connect_tcp(host_port, until).map_err(Lost::Io)?)),
        (Address::Tcp(host_port), Some(tls)) => {
            let name = crate::tls::server_name(host_port).map_err(|e| Lost::Tls(format!("TLS: {e}")))?;
            let stream = connect_tcp(host_port, until).map_err(Lost::Io)?;
            Ok(Stream::Tls(Box::new(TlsStream::client(stream, tls, name).map_err(Lost::Io)?)))
        }
        (Address::Unix(path), None) => {
            let stream = std::os::unix::net::UnixStream::connect(path).map_err(Lost::Io)?;
            stream.set_nonblocking(true).map_err(Lost::Io)?;
            Ok(Stream::Unix(UnixStream::from_std(stream)))
        }
        (Address::Unix(_), Some(_)) => Err(Lost::Tls("TLS needs a TCP address, not a Unix socket".into())),
    }
}

pub(super) fn connect_tcp(host_port: &str, until: Instant) -> io::Result<TcpStream> {
    let mut last_error = None;
    for address in host_port.to_socket_addrs()? {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out"));
        }
        match std::net::TcpStream::connect_timeout(&address, left) {
            Ok(stream) => {
                // Frames are written whole; do not wait to coalesce them.
                stream.set_nodelay(true)?;
                stream.set_nonblocking(true)?;
                return Ok(TcpStream::from_std(stream));
            }
            Err(error) => last_error = Some(error),
        }
    }
    Err(last_error
        .unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{host_port} resolves to no address"))))
}
