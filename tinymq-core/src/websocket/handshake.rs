//! The opening handshake (RFC 6455 section 4.2) on a request head that
//! httparse has already parsed: checks, subprotocol choice, and the 101
//! response or the refusal.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// The GUID appended to the key before hashing (RFC 6455 section 1.3).
const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// An accepted upgrade: what the 101 response says.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub struct Upgrade {
    /// The `Sec-WebSocket-Accept` value.
    pub accept: String,
    /// The subprotocol chosen from the client's list, if any.
    pub protocol: Option<&'static str>,
}

impl Upgrade {
    /// The `101 Switching Protocols` response, as bytes.
    pub fn response(&self) -> Vec<u8> {
        let mut text = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n",
            self.accept
        );
        if let Some(protocol) = self.protocol {
            text.push_str(&format!("Sec-WebSocket-Protocol: {protocol}\r\n"));
        }
        text.push_str("\r\n");
        text.into_bytes()
    }
}

/// Why an upgrade request is refused; [`HandshakeError::status`] is the reply.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// No `Upgrade: websocket` (with `Connection: upgrade`): the path only
    /// speaks WebSocket, so 426.
    #[error("this path needs a WebSocket upgrade")]
    UpgradeRequired,
    /// A `Sec-WebSocket-Version` other than 13: 426 with the version we speak.
    #[error("WebSocket version 13 is required")]
    UnsupportedVersion,
    /// Anything else wrong with the request: 400.
    #[error("{0}")]
    BadRequest(&'static str),
}

impl HandshakeError {
    /// The HTTP status code of the refusal.
    pub fn status(&self) -> u16 {
        match self {
            HandshakeError::UpgradeRequired | HandshakeError::UnsupportedVersion => 426,
            HandshakeError::BadRequest(_) => 400,
        }
    }

    /// The refusal as a whole response, closing the connection. A 426 says
    /// which upgrade and version would do (RFC 6455 section 4.4).
    pub fn response(&self) -> Vec<u8> {
        let (status, reason) = match self.status() {
            426 => (426, "Upgrade Required"),
            _ => (400, "Bad Request"),
        };
        let body = format!("{self}\n");
        let extra = if status == 426 { "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n" } else { "" };
        format!(
            "HTTP/1.1 {status} {reason}\r\n{extra}Content-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }
}

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`: Base64(SHA-1(key + GUID)).
pub fn accept_key(key: &str) -> String {
    let mut sha1 = sha1_smol::Sha1::new();
    sha1.update(key.as_bytes());
    sha1.update(GUID.as_bytes());
    STANDARD.encode(sha1.digest().bytes())
}

/// Checks an upgrade request and chooses its subprotocol.
///
/// `method` and the `headers` (name, value) come from the request head;
/// `offered` lists the
/// subprotocols the path speaks, in the server's order of preference (`["mqtt"]`
/// for `/mqtt`, empty for `/ws`). When the path offers some, the client must
/// ask for one of them; when it offers none, whatever the client asks for is
/// not answered (RFC 6455 section 4.2.2 lets the server pick none).
pub fn accept<'h>(
    method: &str,
    headers: impl IntoIterator<Item = (&'h str, &'h [u8])> + Clone,
    offered: &[&'static str],
) -> Result<Upgrade, HandshakeError> {
    if method != "GET" {
        return Err(HandshakeError::BadRequest("a WebSocket upgrade must be a GET"));
    }
    let values = |name: &'static str| {
        let headers = headers.clone().into_iter();
        headers.filter(move |(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| String::from_utf8_lossy(v))
    };
    let tokens = |name: &'static str| {
        values(name)
            .flat_map(|v| v.split(',').map(|t| t.trim().to_owned()).collect::<Vec<_>>())
            .filter(|t| !t.is_empty())
    };
    let upgrade = tokens("upgrade").any(|t| t.eq_ignore_ascii_case("websocket"));
    let connection = tokens("connection").any(|t| t.eq_ignore_ascii_case("upgrade"));
    if !upgrade || !connection {
        return Err(HandshakeError::UpgradeRequired);
    }
    let mut versions = values("sec-websocket-version");
    match (versions.next(), versions.next()) {
        (Some(v), None) if v.trim() == "13" => {}
        _ => return Err(HandshakeError::UnsupportedVersion),
    }
    let mut keys = values("sec-websocket-key");
    let key = match (keys.next(), keys.next()) {
        (Some(key), None) => key.trim().to_owned(),
        _ => return Err(HandshakeError::BadRequest("one Sec-WebSocket-Key is required")),
    };
    match STANDARD.decode(&key) {
        Ok(bytes) if bytes.len() == 16 => {}
        _ => return Err(HandshakeError::BadRequest("Sec-WebSocket-Key is not 16 bytes in Base64")),
    }
    let asked: Vec<String> = tokens("sec-websocket-protocol").collect();
    let protocol = if offered.is_empty() {
        None
    } else {
        // The client's order decides among those both sides speak.
        let chosen = asked.iter().find_map(|a| offered.iter().find(|o| **o == a.as_str()).copied());
        Some(chosen.ok_or(HandshakeError::BadRequest("no subprotocol this path speaks was asked for"))?)
    };
    Ok(Upgrade { accept: accept_key(&key), protocol })
}
