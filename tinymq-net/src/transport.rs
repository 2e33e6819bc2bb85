//! Listeners and streams of every transport, as enums matched where they
//! differ.

use std::io::{self, IoSlice, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use mio::event::Source;
use mio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use mio::{Interest, Registry, Token};

use crate::Error;
use crate::tls::{ServerTls, TlsStream};
use crate::ws::WsStream;

/// Where a listener accepts connections.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListenAddr {
    /// The binary protocol over TCP.
    Tcp(SocketAddr),
    /// The binary protocol over a Unix domain socket at this path.
    Unix(PathBuf),
    /// HTTP: the Moustique-compatible API and the plain API.
    Http(SocketAddr),
    /// The binary protocol over TLS, with the broker's certificate
    /// ([`crate::BrokerBuilder::tls`]).
    Tls(SocketAddr),
    /// HTTPS: HTTP over TLS, with the same certificate.
    Https(SocketAddr),
    /// MQTT 3.1.1 and 5.0 over TCP.
    Mqtt(SocketAddr),
    /// MQTT over TLS, with the same certificate.
    Mqtts(SocketAddr),
}

impl std::fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenAddr::Tcp(addr) => write!(f, "tcp://{addr}"),
            ListenAddr::Unix(path) => write!(f, "unix://{}", path.display()),
            ListenAddr::Http(addr) => write!(f, "http://{addr}"),
            ListenAddr::Tls(addr) => write!(f, "tls://{addr}"),
            ListenAddr::Https(addr) => write!(f, "https://{addr}"),
            ListenAddr::Mqtt(addr) => write!(f, "mqtt://{addr}"),
            ListenAddr::Mqtts(addr) => write!(f, "mqtts://{addr}"),
        }
    }
}

pub(crate) enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
    Http(TcpListener),
    Tls(TcpListener, Arc<rustls::ServerConfig>),
    Https(TcpListener, Arc<rustls::ServerConfig>),
    Mqtt(TcpListener),
    Mqtts(TcpListener, Arc<rustls::ServerConfig>),
}

impl Listener {
    /// Opens a listener; a TLS or HTTPS one needs the broker's certificate.
    pub(crate) fn bind(address: &ListenAddr, tls: Option<&ServerTls>) -> Result<Self, Error> {
        let listen_error = |source| Error::Listen { address: address.to_string(), source };
        let certificate = || tls.ok_or_else(|| Error::NoCertificate(address.to_string()));
        match address {
            ListenAddr::Tcp(addr) => Ok(Listener::Tcp(TcpListener::bind(*addr).map_err(listen_error)?)),
            ListenAddr::Http(addr) => Ok(Listener::Http(TcpListener::bind(*addr).map_err(listen_error)?)),
            ListenAddr::Tls(addr) => {
                let config = certificate()?.binary();
                Ok(Listener::Tls(TcpListener::bind(*addr).map_err(listen_error)?, config))
            }
            ListenAddr::Https(addr) => {
                let config = certificate()?.https();
                Ok(Listener::Https(TcpListener::bind(*addr).map_err(listen_error)?, config))
            }
            ListenAddr::Mqtt(addr) => Ok(Listener::Mqtt(TcpListener::bind(*addr).map_err(listen_error)?)),
            ListenAddr::Mqtts(addr) => {
                let config = certificate()?.mqtt();
                Ok(Listener::Mqtts(TcpListener::bind(*addr).map_err(listen_error)?, config))
            }
            ListenAddr::Unix(path) => {
                remove_stale_socket(path)?;
                Ok(Listener::Unix(UnixListener::bind(path).map_err(listen_error)?, path.clone()))
            }
        }
    }

    /// The bound address (with the real port when port 0 was asked for).
    pub(crate) fn local_addr(&self) -> io::Result<ListenAddr> {
        Ok(match self {
            Listener::Tcp(listener) => ListenAddr::Tcp(listener.local_addr()?),
            Listener::Unix(_, path) => ListenAddr::Unix(path.clone()),
            Listener::Http(listener) => ListenAddr::Http(listener.local_addr()?),
            Listener::Tls(listener, _) => ListenAddr::Tls(listener.local_addr()?),
            Listener::Https(listener, _) => ListenAddr::Https(listener.local_addr()?),
            Listener::Mqtt(listener) => ListenAddr::Mqtt(listener.local_addr()?),
            Listener::Mqtts(listener, _) => ListenAddr::Mqtts(listener.local_addr()?),
        })
    }

    pub(crate) fn accept(&self) -> io::Result<(Stream, Option<IpAddr>)> {
        match self {
            Listener::Tcp(listener) | Listener::Http(listener) | Listener::Mqtt(listener) => {
                let (stream, peer) = listener.accept()?;
                // Small frames go out at once; we coalesce writes ourselves.
                stream.set_nodelay(true)?;
                let stream = match self {
                    Listener::Http(_) => Stream::Http(stream),
                    Listener::Mqtt(_) => Stream::Mqtt(stream),
                    _ => Stream::Tcp(stream),
                };
                Ok((stream, Some(peer.ip())))
            }
            Listener::Tls(listener, config) | Listener::Https(listener, config) | Listener::Mqtts(listener, config) => {
                loop {
                    let (stream, peer) = listener.accept()?;
                    stream.set_nodelay(true)?;
                    // The handshake is driven by the event loop, never here.
                    let tls = match TlsStream::server(stream, config.clone()) {
                        Ok(tls) => Box::new(tls),
                        Err(error) => {
                            // That connection only; the next may be accepted.
                            log::warn!("cannot start TLS with {peer}: {error}");
                            continue;
                        }
                    };
                    let stream = match self {
                        Listener::Https(..) => Stream::Https(tls),
                        Listener::Mqtts(..) => Stream::Mqtts(tls),
                        _ => Stream::Tls(tls),
                    };
                    break Ok((stream, Some(peer.ip())));
                }
            }
            Listener::Unix(listener, _) => Ok((Stream::Unix(listener.accept()?.0), None)),
        }
    }

    pub(crate) fn source(&mut self) -> &mut dyn Source {
        match self {
            Listener::Tcp(listener) | Listener::Http(listener) | Listener::Mqtt(listener) => listener,
            Listener::Tls(listener, _) | Listener::Https(listener, _) | Listener::Mqtts(listener, _) => listener,
            Listener::Unix(listener, _) => listener,
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix(_, path) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// A socket file left by a broker that died is removed; one that a live
/// process still accepts on is an error, never stolen.
fn remove_stale_socket(path: &Path) -> Result<(), Error> {
    use std::os::unix::fs::FileTypeExt;
    let Ok(metadata) = std::fs::symlink_metadata(path) else { return Ok(()) };
    if !metadata.file_type().is_socket() {
        // Never delete what is not a socket: it is somebody's file.
        let source = std::io::Error::new(std::io::ErrorKind::AlreadyExists, "the path exists and is not a socket");
        return Err(Error::Listen { address: path.display().to_string(), source });
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(Error::SocketInUse(path.to_owned()));
    }
    std::fs::remove_file(path).map_err(|source| Error::Listen { address: path.display().to_string(), source })
}

/// A connected stream of any transport, matched where they differ: the
/// event loops' connections and the network client's ([`crate::Client`],
/// which uses `Tcp`, `Unix` and `Tls`).
#[derive(Debug)]
pub(crate) enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
    /// A TCP connection to the HTTP listener.
    Http(TcpStream),
    /// The binary protocol over TLS.
    Tls(Box<TlsStream>),
    /// HTTP over TLS.
    Https(Box<TlsStream>),
    /// An HTTP (or HTTPS) connection upgraded to WebSocket.
    Ws(Box<WsStream>),
    /// A TCP connection to the MQTT listener.
    Mqtt(TcpStream),
    /// MQTT over TLS.
    Mqtts(Box<TlsStream>),
}

impl Stream {
    pub(crate) fn source(&mut self) -> &mut dyn Source {
        match self {
            Stream::Tcp(s) | Stream::Http(s) | Stream::Mqtt(s) => s,
            Stream::Unix(s) => s,
            Stream::Tls(s) | Stream::Https(s) | Stream::Mqtts(s) => s.socket_mut(),
            Stream::Ws(s) => s.source(),
        }
    }

    pub(crate) fn register(&mut self, registry: &Registry, token: Token, interest: Interest) -> io::Result<()> {
        registry.register(self.source(), token, interest)
    }

    pub(crate) fn reregister(&mut self, registry: &Registry, token: Token, interest: Interest) -> io::Result<()> {
        registry.reregister(self.source(), token, interest)
    }

    pub(crate) fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        registry.deregister(self.source())
    }

    pub(crate) fn transport(&self) -> Transport {
        match self {
            Stream::Tcp(_) => Transport::Tcp,
            Stream::Unix(_) => Transport::Unix,
            Stream::Http(_) => Transport::Http,
            Stream::Tls(_) => Transport::Tls,
            Stream::Https(_) => Transport::Https,
            Stream::Mqtt(_) => Transport::Mqtt,
            Stream::Mqtts(_) => Transport::Mqtts,
            Stream::Ws(s) => s.transport(),
        }
    }

    /// Reads what the peer sent (plaintext, for TLS) into `buf`. A read
    /// shorter than `buf` means the socket held no more for now. `cipher`
    /// is scratch space for TLS records.
    pub(crate) fn read(&mut self, buf: &mut [u8], cipher: &mut Vec<u8>) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) | Stream::Http(s) | Stream::Mqtt(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
            Stream::Tls(s) | Stream::Https(s) | Stream::Mqtts(s) => s.read_plain(buf, cipher),
            Stream::Ws(s) => s.read(buf, cipher),
        }
    }

    /// Whether a read would return the end of input without the socket
    /// (TLS: a close_notify came behind the last plaintext), so a short
    /// read does not mean there is nothing more to handle.
    pub(crate) fn has_unreported_eof(&self) -> bool {
        match self {
            Stream::Tls(s) | Stream::Https(s) | Stream::Mqtts(s) => s.has_unreported_eof(),
            Stream::Ws(s) => s.has_unreported_eof(),
            _ => false,
        }
    }

    /// Writes (encrypting, for TLS) what the socket takes now.
    pub(crate) fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) | Stream::Http(s) | Stream::Mqtt(s) => s.write_vectored(bufs),
            Stream::Unix(s) => s.write_vectored(bufs),
            Stream::Tls(s) | Stream::Https(s) | Stream::Mqtts(s) => s.write_plain(bufs),
            Stream::Ws(s) => s.write_vectored(bufs),
        }
    }

    /// Whether bytes already accepted still wait for the socket (TLS
    /// records, a handshake's answer, a close_notify).
    pub(crate) fn wants_write(&self) -> bool {
        match self {
            Stream::Tls(s) | Stream::Https(s) | Stream::Mqtts(s) => s.wants_write(),
            Stream::Ws(s) => s.wants_write(),
            _ => false,
        }
    }

    /// Sends what waits (see [`Stream::wants_write`]) until done or
    /// `WouldBlock`.
    pub(crate) fn send_pending(&mut self) -> io::Result<()> {
        match self {
            Stream::Tls(s) | Stream::Https(s) | Stream::Mqtts(s) => s.send_pending(),
            Stream::Ws(s) => s.send_pending(),
            _ => Ok(()),
        }
    }

    /// Whether a TLS error ended this connection during its handshake.
    pub(crate) fn failed_handshake(&self) -> bool {
        match self {
            Stream::Tls(s) | Stream::Https(s) | Stream::Mqtts(s) => s.failed_handshake(),
            Stream::Ws(s) => s.failed_handshake(),
            _ => false,
        }
    }

    /// Closes the sending side (the peer reads EOF after what was sent;
    /// over TLS, a close_notify first, and the socket's side once it is
    /// out).
    pub(crate) fn shutdown_write(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) | Stream::Http(s) | Stream::Mqtt(s) => s.shutdown(std::net::Shutdown::Write),
            Stream::Unix(s) => s.shutdown(std::net::Shutdown::Write),
            Stream::Tls(s) | Stream::Https(s) | Stream::Mqtts(s) => s.shutdown_write(),
            Stream::Ws(s) => s.shutdown_write(),
        }
    }

    /// Before the stream is dropped: TLS says close_notify (best effort).
    pub(crate) fn close(&mut self) {
        match self {
            Stream::Tls(s) | Stream::Https(s) | Stream::Mqtts(s) => s.close(),
            Stream::Ws(s) => s.close(),
            _ => {}
        }
    }

    /// Closes both directions at once (over TLS, after a close_notify, best
    /// effort): the network client's disconnect.
    pub(crate) fn shutdown(&mut self) -> io::Result<()> {
        self.close();
        match self {
            Stream::Tcp(s) | Stream::Http(s) | Stream::Mqtt(s) => s.shutdown(std::net::Shutdown::Both),
            Stream::Unix(s) => s.shutdown(std::net::Shutdown::Both),
            Stream::Tls(s) | Stream::Https(s) | Stream::Mqtts(s) => s.socket().shutdown(std::net::Shutdown::Both),
            Stream::Ws(s) => s.shutdown(),
        }
    }
}

/// The kind of a connection, for statistics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    /// Binary protocol over TCP.
    Tcp,
    /// Binary protocol over a Unix domain socket.
    Unix,
    /// HTTP.
    Http,
    /// Binary protocol over TLS.
    Tls,
    /// HTTP over TLS.
    Https,
    /// Binary protocol over WebSocket (`GET /ws` on the HTTP listener).
    Ws,
    /// Binary protocol over WebSocket over TLS (`GET /ws` on HTTPS).
    Wss,
    /// MQTT over TCP.
    Mqtt,
    /// MQTT over TLS.
    Mqtts,
    /// MQTT over WebSocket (`GET /mqtt` on the HTTP listener).
    MqttWs,
    /// MQTT over WebSocket over TLS (`GET /mqtt` on HTTPS).
    MqttWss,
}

impl Transport {
    /// Every transport, in the order of their counters.
    pub const ALL: [Transport; 11] = [
        Transport::Tcp,
        Transport::Unix,
        Transport::Http,
        Transport::Tls,
        Transport::Https,
        Transport::Ws,
        Transport::Wss,
        Transport::Mqtt,
        Transport::Mqtts,
        Transport::MqttWs,
        Transport::MqttWss,
    ];

    /// Its name in statistics.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Unix => "unix",
            Transport::Http => "http",
            Transport::Tls => "tls",
            Transport::Https => "https",
            Transport::Ws => "ws",
            Transport::Wss => "wss",
            Transport::Mqtt => "mqtt",
            Transport::Mqtts => "mqtts",
            Transport::MqttWs => "mqtt-ws",
            Transport::MqttWss => "mqtt-wss",
        }
    }

    /// Whether it speaks HTTP (plain or over TLS).
    pub fn is_http(self) -> bool {
        matches!(self, Transport::Http | Transport::Https)
    }

    /// Whether its connections take the binary protocol's Publish frames,
    /// encoded once for many (HTTP event streams and MQTT clients take the
    /// shared delivery and encode their own).
    pub fn takes_binary_frames(self) -> bool {
        !self.is_http() && !self.is_mqtt()
    }

    /// Whether it speaks MQTT (over TCP, TLS or WebSocket).
    pub fn is_mqtt(self) -> bool {
        matches!(self, Transport::Mqtt | Transport::Mqtts | Transport::MqttWs | Transport::MqttWss)
    }
}
