//! Listeners and streams of every transport, as enums matched where they
//! differ.

use std::io::{self, IoSlice, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use mio::event::Source;
use mio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use mio::{Interest, Registry, Token};

use crate::Error;

/// Where a listener accepts connections.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListenAddr {
    /// The binary protocol over TCP.
    Tcp(SocketAddr),
    /// The binary protocol over a Unix domain socket at this path.
    Unix(PathBuf),
    /// HTTP: the Moustique-compatible API and the plain API.
    Http(SocketAddr),
}

impl std::fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenAddr::Tcp(addr) => write!(f, "tcp://{addr}"),
            ListenAddr::Unix(path) => write!(f, "unix://{}", path.display()),
            ListenAddr::Http(addr) => write!(f, "http://{addr}"),
        }
    }
}

pub(crate) enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
    Http(TcpListener),
}

impl Listener {
    pub(crate) fn bind(address: &ListenAddr) -> Result<Self, Error> {
        let listen_error = |source| Error::Listen { address: address.to_string(), source };
        match address {
            ListenAddr::Tcp(addr) => Ok(Listener::Tcp(TcpListener::bind(*addr).map_err(listen_error)?)),
            ListenAddr::Http(addr) => Ok(Listener::Http(TcpListener::bind(*addr).map_err(listen_error)?)),
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
        })
    }

    pub(crate) fn accept(&self) -> io::Result<(Stream, Option<IpAddr>)> {
        match self {
            Listener::Tcp(listener) | Listener::Http(listener) => {
                let (stream, peer) = listener.accept()?;
                // Small frames go out at once; we coalesce writes ourselves.
                stream.set_nodelay(true)?;
                let stream = if matches!(self, Listener::Http(_)) { Stream::Http(stream) } else { Stream::Tcp(stream) };
                Ok((stream, Some(peer.ip())))
            }
            Listener::Unix(listener, _) => Ok((Stream::Unix(listener.accept()?.0), None)),
        }
    }

    pub(crate) fn source(&mut self) -> &mut dyn Source {
        match self {
            Listener::Tcp(listener) | Listener::Http(listener) => listener,
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

pub(crate) enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
    /// A TCP connection to the HTTP listener.
    Http(TcpStream),
}

impl Stream {
    pub(crate) fn register(&mut self, registry: &Registry, token: Token, interest: Interest) -> io::Result<()> {
        match self {
            Stream::Tcp(s) | Stream::Http(s) => registry.register(s, token, interest),
            Stream::Unix(s) => registry.register(s, token, interest),
        }
    }

    pub(crate) fn reregister(&mut self, registry: &Registry, token: Token, interest: Interest) -> io::Result<()> {
        match self {
            Stream::Tcp(s) | Stream::Http(s) => registry.reregister(s, token, interest),
            Stream::Unix(s) => registry.reregister(s, token, interest),
        }
    }

    pub(crate) fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        match self {
            Stream::Tcp(s) | Stream::Http(s) => registry.deregister(s),
            Stream::Unix(s) => registry.deregister(s),
        }
    }

    pub(crate) fn transport(&self) -> Transport {
        match self {
            Stream::Tcp(_) => Transport::Tcp,
            Stream::Unix(_) => Transport::Unix,
            Stream::Http(_) => Transport::Http,
        }
    }

    /// Closes the sending side (the peer reads EOF after what was sent).
    pub(crate) fn shutdown_write(&self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) | Stream::Http(s) => s.shutdown(std::net::Shutdown::Write),
            Stream::Unix(s) => s.shutdown(std::net::Shutdown::Write),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) | Stream::Http(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) | Stream::Http(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) | Stream::Http(s) => s.write_vectored(bufs),
            Stream::Unix(s) => s.write_vectored(bufs),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
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
}

impl Transport {
    /// Every transport, in the order of their counters.
    pub const ALL: [Transport; 3] = [Transport::Tcp, Transport::Unix, Transport::Http];

    /// Its name in statistics.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Unix => "unix",
            Transport::Http => "http",
        }
    }
}
