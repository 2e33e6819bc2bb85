//! TLS for the binary protocol and HTTP: the broker's certificate
//! ([`ServerTls`]), what a client trusts ([`ClientTls`]), and the
//! non-blocking TLS stream the event loop and the client drive.
//!
//! rustls with the *ring* provider does the cryptography; this module only
//! moves bytes between a socket and a `rustls::Connection`, never blocking:
//! a handshake is a few turns of the event loop like any other input.

use std::io::{self, IoSlice, Read, Write};
use std::net::Shutdown;
use std::path::Path;
use std::sync::Arc;

use mio::net::TcpStream;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

/// What went wrong setting TLS up: a certificate, key or CA that cannot be
/// read or used. Each names the file (or PEM) at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A PEM file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        source: io::Error,
    },
    /// A PEM file (or text) holds no usable certificate or key.
    #[error("{origin}: {reason}")]
    Pem {
        /// The file, or which PEM text.
        origin: String,
        /// What is wrong with it.
        reason: String,
    },
    /// rustls refused the certificate chain and key (a key that does not
    /// match the certificate, say), or a CA certificate.
    #[error("{origin} cannot be used: {source}")]
    Rejected {
        /// The files, or which PEM text.
        origin: String,
        /// rustls' reason.
        source: rustls::Error,
    },
}

/// The crypto provider every TLS configuration uses: ring.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_pem_file(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { path: path.display().to_string(), source })
}

/// Every certificate in a PEM text; at least one.
fn parse_certificates(pem: &[u8], origin: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem_error = |reason: String| TlsError::Pem { origin: origin.to_owned(), reason };
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(format!("not valid PEM: {e}")))?;
    if certificates.is_empty() {
        return Err(pem_error("no certificate in it (expected a PEM \"CERTIFICATE\" block)".into()));
    }
    Ok(certificates)
}

/// The first private key in a PEM text (PKCS#8, PKCS#1 or SEC1).
fn parse_key(pem: &[u8], origin: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| TlsError::Pem {
        origin: origin.to_owned(),
        reason: match e {
            rustls::pki_types::pem::Error::NoItemsFound => {
                "no private key in it (expected a PEM \"PRIVATE KEY\" block)".to_owned()
            }
            e => format!("not valid PEM: {e}"),
        },
    })
}

/// The broker's certificate chain and private key, ready to serve TLS
/// (the binary protocol on [`crate::ListenAddr::Tls`]) and HTTPS
/// ([`crate::ListenAddr::Https`]). Made once, shared by every connection.
#[derive(Clone, Debug)]
pub struct ServerTls {
    config: Arc<ServerConfig>,
}

impl ServerTls {
    /// From a certificate chain (the broker's certificate first) and its
    /// private key. Fails if the key does not match the certificate.
    pub fn new(chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> Result<Self, TlsError> {
        Self::build(chain, key, "the certificate and key")
    }

    /// From PEM files: `cert` holds the chain (the broker's certificate
    /// first), `key` its private key.
    pub fn from_pem_files(cert: impl AsRef<Path>, key: impl AsRef<Path>) -> Result<Self, TlsError> {
        let (cert, key) = (cert.as_ref(), key.as_ref());
        let chain = parse_certificates(&read_pem_file(cert)?, &cert.display().to_string())?;
        let key_der = parse_key(&read_pem_file(key)?, &key.display().to_string())?;
        Self::build(chain, key_der, &format!("{} with {}", cert.display(), key.display()))
    }

    /// From PEM text, as [`ServerTls::from_pem_files`] reads it.
    pub fn from_pem(cert: &[u8], key: &[u8]) -> Result<Self, TlsError> {
        let chain = parse_certificates(cert, "the certificate PEM")?;
        Self::build(chain, parse_key(key, "the key PEM")?, "the certificate and key")
    }

    fn build(chain: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>, origin: &str) -> Result<Self, TlsError> {
        let rejected = |source| TlsError::Rejected { origin: origin.to_owned(), source };
        let config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(rejected)?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(rejected)?;
        Ok(ServerTls { config: Arc::new(config) })
    }

    /// The configuration for the binary protocol.
    pub(crate) fn binary(&self) -> Arc<ServerConfig> {
        self.config.clone()
    }

    /// The configuration for MQTT over TLS: the same certificate, and
    /// ALPN `mqtt` for clients that offer it (a client offering none is
    /// served all the same).
    pub(crate) fn mqtt(&self) -> Arc<ServerConfig> {
        let mut config = (*self.config).clone();
        config.alpn_protocols = vec![b"mqtt".to_vec()];
        Arc::new(config)
    }

    /// The configuration for HTTPS: the same certificate, and ALPN saying
    /// HTTP/1.1 (so a client offering HTTP/2 knows to speak 1.1).
    pub(crate) fn https(&self) -> Arc<ServerConfig> {
        let mut config = (*self.config).clone();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

/// How a client checks the broker's certificate: against a CA it trusts,
/// or (for tests and first steps only) not at all.
#[derive(Clone, Debug)]
pub struct ClientTls {
    config: Arc<ClientConfig>,
    /// The CAs trusted, kept to add a client certificate; `None` for
    /// [`ClientTls::insecure`].
    roots: Option<RootCertStore>,
}

impl ClientTls {
    /// Trusts the CA certificates in a PEM file: the broker's certificate
    /// must be issued by one of them for the host name (or IP address) the
    /// client connects to.
    pub fn with_ca_file(path: impl AsRef<Path>) -> Result<Self, TlsError> {
        let path = path.as_ref();
        let origin = path.display().to_string();
        Self::with_roots(parse_certificates(&read_pem_file(path)?, &origin)?, &origin)
    }

    /// Trusts the CA certificates in PEM text.
    pub fn with_ca_pem(pem: &[u8]) -> Result<Self, TlsError> {
        Self::with_roots(parse_certificates(pem, "the CA PEM")?, "the CA PEM")
    }

    /// Trusts these CA certificates.
    pub fn with_ca_certificates(certificates: Vec<CertificateDer<'static>>) -> Result<Self, TlsError> {
        Self::with_roots(certificates, "the CA certificates")
    }

    fn with_roots(certificates: Vec<CertificateDer<'static>>, origin: &str) -> Result<Self, TlsError> {
        let rejected = |source| TlsError::Rejected { origin: origin.to_owned(), source };
        let mut roots = RootCertStore::empty();
        for certificate in certificates {
            roots.add(certificate).map_err(rejected)?;
        }
        let config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(rejected)?
            .with_root_certificates(roots.clone())
            .with_no_client_auth();
        Ok(ClientTls { config: Arc::new(config), roots: Some(roots) })
    }

    /// Also presents a client certificate, for servers that require one
    /// (mutual TLS): `cert` holds the chain (the client's certificate
    /// first), `key` its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    /// Fails if a file cannot be read or used, or on an insecure client.
    pub fn with_client_cert_files(self, cert: impl AsRef<Path>, key: impl AsRef<Path>) -> Result<Self, TlsError> {
        let (cert, key) = (cert.as_ref(), key.as_ref());
        let chain = parse_certificates(&read_pem_file(cert)?, &cert.display().to_string())?;
        let key_der = parse_key(&read_pem_file(key)?, &key.display().to_string())?;
        self.with_client_cert(chain, key_der, &format!("{} with {}", cert.display(), key.display()))
    }

    fn with_client_cert(
        self,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        origin: &str,
    ) -> Result<Self, TlsError> {
        let rejected = |source| TlsError::Rejected { origin: origin.to_owned(), source };
        let Some(roots) = self.roots else {
            return Err(TlsError::Pem { origin: origin.to_owned(), reason: "an insecure client has no CA".into() });
        };
        let config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(rejected)?
            .with_root_certificates(roots.clone())
            .with_client_auth_cert(chain, key)
            .map_err(rejected)?;
        Ok(ClientTls { config: Arc::new(config), roots: Some(roots) })
    }

    /// Encrypts but accepts any certificate: anyone on the path can pose as
    /// the broker. For tests and first steps only.
    pub fn insecure() -> Self {
        let provider = provider();
        let verifier = Arc::new(AcceptAnyCertificate(provider.signature_verification_algorithms));
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        ClientTls { config: Arc::new(config), roots: None }
    }

    /// Turns off session resumption, so every connection makes a full
    /// handshake (what a benchmark of handshakes wants).
    pub fn without_resumption(self) -> Self {
        let mut config = (*self.config).clone();
        config.resumption = rustls::client::Resumption::disabled();
        ClientTls { config: Arc::new(config), roots: self.roots }
    }

    /// The rustls configuration, for a client built on other I/O.
    pub fn config(&self) -> Arc<ClientConfig> {
        self.config.clone()
    }
}

impl ClientTls {
    /// The server name a client checks the certificate against: the host
    /// part of `host:port` (a name, or an IP address matched against the
    /// certificate's IP addresses).
    pub fn server_name(host_port: &str) -> Result<ServerName<'static>, String> {
        server_name(host_port)
    }
}

/// See [`ClientTls::server_name`].
pub(crate) fn server_name(host_port: &str) -> Result<ServerName<'static>, String> {
    let host = match host_port.strip_prefix('[') {
        Some(rest) => rest.split_once(']').map(|(host, _)| host),
        None => host_port.rsplit_once(':').map(|(host, _)| host),
    }
    .ok_or_else(|| format!("{host_port:?} is not HOST:PORT"))?;
    ServerName::try_from(host.to_owned()).map_err(|e| format!("{host:?} is not a valid server name: {e}"))
}

/// Accepts every certificate but still checks the handshake's signatures
/// (so the session is encrypted to whoever holds the key it presents).
#[derive(Debug)]
struct AcceptAnyCertificate(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// A TLS failure inside an `io::Error` (kind `InvalidData`): the peer sent
/// something that is not TLS, or a handshake or record failed.
#[derive(Debug)]
pub(crate) struct TlsFailure {
    pub(crate) error: rustls::Error,
    /// It happened during the handshake.
    pub(crate) handshaking: bool,
}

impl std::fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let stage = if self.handshaking { "TLS handshake failed" } else { "TLS failed" };
        write!(f, "{stage}: {}", self.error)
    }
}

impl std::error::Error for TlsFailure {}

impl TlsFailure {
    /// The failure an `io::Error` carries, if it is one.
    pub(crate) fn of(error: &io::Error) -> Option<&TlsFailure> {
        error.get_ref()?.downcast_ref::<TlsFailure>()
    }
}

/// A non-blocking TCP stream with TLS on it, server or client side.
///
/// Reading hands out plaintext: what rustls already holds first, then what
/// the socket has, decrypted. A read that returns less than was asked for
/// means the socket had nothing more (a short read, or `WouldBlock`) and
/// rustls holds no plaintext: the edge-triggered caller may wait for the
/// next readiness event, and nothing stays stuck in rustls' buffers.
/// Writing encrypts into rustls' bounded buffer and sends what the socket
/// takes; [`TlsStream::wants_write`] says ciphertext is still waiting.
#[derive(Debug)]
pub(crate) struct TlsStream {
    socket: TcpStream,
    tls: rustls::Connection,
    /// The socket's last read was short or would block: it held no more.
    socket_drained: bool,
    /// The socket's end was read.
    socket_eof: bool,
    /// The peer's close_notify or end of stream came, and every byte of
    /// plaintext before it was handed out.
    input_done: bool,
    /// A read returned 0 for it.
    eof_reported: bool,
    close_notify_sent: bool,
    /// The sending side is to be shut once the ciphertext is out.
    shut_pending: bool,
    failed: bool,
}

impl TlsStream {
    pub(crate) fn server(socket: TcpStream, config: Arc<ServerConfig>) -> io::Result<Self> {
        let tls = rustls::ServerConnection::new(config).map_err(io::Error::other)?;
        Ok(Self::with(socket, tls.into()))
    }

    pub(crate) fn client(socket: TcpStream, config: &ClientTls, name: ServerName<'static>) -> io::Result<Self> {
        let tls = rustls::ClientConnection::new(config.config.clone(), name).map_err(io::Error::other)?;
        Ok(Self::with(socket, tls.into()))
    }

    fn with(socket: TcpStream, tls: rustls::Connection) -> Self {
        TlsStream {
            socket,
            tls,
            socket_drained: false,
            socket_eof: false,
            input_done: false,
            eof_reported: false,
            close_notify_sent: false,
            shut_pending: false,
            failed: false,
        }
    }

    pub(crate) fn socket(&self) -> &TcpStream {
        &self.socket
    }

    pub(crate) fn socket_mut(&mut self) -> &mut TcpStream {
        &mut self.socket
    }

    /// Whether a TLS error ended the connection during the handshake.
    pub(crate) fn failed_handshake(&self) -> bool {
        self.failed && self.tls.is_handshaking()
    }

    /// Reads plaintext into `buf`; `cipher` is scratch space for the
    /// ciphertext (the caller's, shared by its connections). `Ok(0)` is the
    /// end of the peer's input (close_notify, or the socket's end).
    pub(crate) fn read_plain(&mut self, buf: &mut [u8], cipher: &mut Vec<u8>) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        // Handshake bytes a blocked socket left behind go first: the peer
        // may wait for them before it sends anything more.
        self.send_pending_ignoring_would_block()?;
        let mut filled = 0;
        loop {
            filled += self.take_plaintext(&mut buf[filled..])?;
            if filled == buf.len() || self.input_done {
                self.eof_reported = self.input_done && filled == 0;
                return Ok(filled);
            }
            if filled > 0 && self.socket_drained {
                return Ok(filled);
            }
            // No more ciphertext than the room left: its plaintext, never
            // larger, then fits and nothing is left over in `cipher`.
            let room = buf.len() - filled;
            if cipher.len() < room {
                cipher.resize(room, 0);
            }
            match self.socket.read(&mut cipher[..room]) {
                Ok(0) => {
                    self.socket_eof = true;
                    self.socket_drained = true;
                    // Whether a close_notify came first or not, the input
                    // ends: the protocols on top delimit their messages.
                    let _ = self.tls.read_tls(&mut io::empty());
                    self.input_done = true;
                    self.eof_reported = filled == 0;
                    return Ok(filled);
                }
                Ok(n) => {
                    self.socket_drained = n < room;
                    self.feed(&cipher[..n], buf, &mut filled)?;
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    self.socket_drained = true;
                    return if filled > 0 { Ok(filled) } else { Err(error) };
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
    }

    /// Hands `ciphertext` to rustls record by record, moving the plaintext
    /// out as it comes, and sends what the handshake answers.
    fn feed(&mut self, mut ciphertext: &[u8], buf: &mut [u8], filled: &mut usize) -> io::Result<()> {
        while !ciphertext.is_empty() && !self.input_done {
            *filled += self.take_plaintext(&mut buf[*filled..])?;
            if let Err(error) = self.tls.read_tls(&mut ciphertext) {
                // Only a record over the size limits fills rustls' buffer.
                return Err(self.fail(rustls::Error::General(format!("cannot take the record: {error}"))));
            }
            if let Err(error) = self.tls.process_new_packets() {
                return Err(self.fail(error));
            }
        }
        *filled += self.take_plaintext(&mut buf[*filled..])?;
        self.send_pending_ignoring_would_block()
    }

    /// Moves the plaintext rustls holds into `buf`; notes the end of input.
    fn take_plaintext(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut taken = 0;
        while taken < buf.len() {
            match self.tls.reader().read(&mut buf[taken..]) {
                Ok(0) => {
                    // close_notify, all plaintext before it handed out.
                    self.input_done = true;
                    break;
                }
                Ok(n) => taken += n,
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => {
                    // The socket ended without close_notify: the protocols
                    // on top delimit their own messages, so an end is an end.
                    self.input_done = true;
                    break;
                }
                Err(error) => return Err(error),
            }
        }
        Ok(taken)
    }

    /// Records a TLS failure, sends the alert rustls queued for it (best
    /// effort), and returns the error to close the connection with.
    fn fail(&mut self, error: rustls::Error) -> io::Error {
        self.failed = true;
        let handshaking = self.tls.is_handshaking();
        let _ = self.tls.write_tls(&mut self.socket);
        io::Error::new(io::ErrorKind::InvalidData, TlsFailure { error, handshaking })
    }

    /// Encrypts plaintext and sends what the socket takes. Accepts nothing
    /// (`WouldBlock`) while rustls' buffer is full.
    pub(crate) fn write_plain(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        // Ciphertext waiting goes first, so the buffer stays bounded.
        self.send_pending()?;
        let accepted = self.tls.writer().write_vectored(bufs)?;
        self.send_pending_ignoring_would_block()?;
        if accepted == 0 && bufs.iter().any(|b| !b.is_empty()) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(accepted)
    }

    /// Whether the end of the peer's input came (a close_notify) but no
    /// read has returned it yet: the next read does, without the socket.
    pub(crate) fn has_unreported_eof(&self) -> bool {
        self.input_done && !self.eof_reported
    }

    /// Whether ciphertext waits for the socket.
    pub(crate) fn wants_write(&self) -> bool {
        self.tls.wants_write()
    }

    /// Sends waiting ciphertext until done or `WouldBlock` (an error); then
    /// shuts the sending side if that was asked for.
    pub(crate) fn send_pending(&mut self) -> io::Result<()> {
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut self.socket) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
        if self.shut_pending {
            self.shut_pending = false;
            self.socket.shutdown(Shutdown::Write)?;
        }
        Ok(())
    }

    fn send_pending_ignoring_would_block(&mut self) -> io::Result<()> {
        match self.send_pending() {
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => Ok(()),
            result => result,
        }
    }

    /// Sends close_notify, then closes the sending side once it is out
    /// (at once, or when [`TlsStream::send_pending`] gets it out later).
    pub(crate) fn shutdown_write(&mut self) -> io::Result<()> {
        // Before the handshake is done there is no session to close.
        if !self.close_notify_sent && !self.tls.is_handshaking() {
            self.close_notify_sent = true;
            self.tls.send_close_notify();
        }
        self.shut_pending = true;
        self.send_pending_ignoring_would_block()
    }

    /// Before dropping: a close_notify if none went out yet, best effort,
    /// so the peer can tell the end from a truncation.
    pub(crate) fn close(&mut self) {
        if self.failed || self.close_notify_sent || self.tls.is_handshaking() || self.socket_eof {
            return;
        }
        self.close_notify_sent = true;
        self.tls.send_close_notify();
        let _ = self.tls.write_tls(&mut self.socket);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_come_from_the_host_part() {
        assert_eq!(server_name("localhost:8883").unwrap(), ServerName::try_from("localhost").unwrap());
        assert!(matches!(server_name("127.0.0.1:8883").unwrap(), ServerName::IpAddress(_)));
        assert!(matches!(server_name("[::1]:8883").unwrap(), ServerName::IpAddress(_)));
        assert!(server_name("no-port").is_err());
    }

    #[test]
    fn bad_pem_names_what_failed() {
        let dir = std::env::temp_dir().join(format!("tinymq-tls-pem-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.pem");
        let error = ServerTls::from_pem_files(&missing, &missing).unwrap_err();
        assert!(error.to_string().starts_with(&format!("cannot read {}", missing.display())), "{error}");

        let garbage = dir.join("garbage.pem");
        std::fs::write(&garbage, "not a certificate\n").unwrap();
        let error = ServerTls::from_pem_files(&garbage, &garbage).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("{}: no certificate in it (expected a PEM \"CERTIFICATE\" block)", garbage.display())
        );
        let error = ClientTls::with_ca_file(&garbage).unwrap_err();
        assert!(error.to_string().starts_with(&garbage.display().to_string()), "{error}");

        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap().self_signed(&key).unwrap();
        let other_key = rcgen::KeyPair::generate().unwrap();
        let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, other_key.serialize_pem()).unwrap();
        let error = ServerTls::from_pem_files(&cert_path, &key_path).unwrap_err();
        assert!(matches!(error, TlsError::Rejected { .. }), "{error}");
        assert!(error.to_string().contains("key.pem"), "{error}");
        let error = ServerTls::from_pem_files(&cert_path, &cert_path).unwrap_err();
        assert!(error.to_string().contains("no private key"), "{error}");

        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        ServerTls::from_pem_files(&cert_path, &key_path).unwrap();
        ClientTls::with_ca_file(&cert_path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
