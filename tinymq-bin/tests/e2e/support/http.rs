//! Helpers shared by the HTTP end-to-end tests (`http_*.rs` and others):
//! the Moustique value encoding, JSON (serde_json's `Value` with a few
//! panicking accessors), an HTTP/1.1 client over a raw `TcpStream` that
//! reads responses with a deadline (heads parsed by httparse), a runner for
//! the client scripts, and curl (for Server-Sent Events, among others). The
//! outside programs are found by `super::tools`.
//!
//! The encoding's Base64 is the `base64` crate's, not the broker's own code
//! (a bug there would cancel out).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::{WAIT, wait_child};

// ---------------------------------------------------------------------------
// The Moustique encoding: Base64 of the UTF-8 text, then ROT13 of the Base64.

/// Standard Base64 with padding.
pub fn base64_encode(data: &[u8]) -> String {
    BASE64.encode(data)
}

/// Standard Base64 with padding; `None` for anything else.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    BASE64.decode(text).ok()
}

/// ROT13 of the ASCII letters; everything else stays.
pub fn rot13(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            'a'..='z' => char::from((c as u8 - b'a' + 13) % 26 + b'a'),
            'A'..='Z' => char::from((c as u8 - b'A' + 13) % 26 + b'A'),
            other => other,
        })
        .collect()
}

/// A value encoded the way today's Moustique clients do (PyPI
/// moustique-client's `encode_rot13_base64`): ROT13, then Base64.
pub fn enc(text: &str) -> String {
    base64_encode(rot13(text).as_bytes())
}

/// The reverse of [`enc`]; panics with the text if it does not decode.
pub fn dec(encoded: &str) -> String {
    let bytes = base64_decode(encoded.trim()).unwrap_or_else(|| panic!("not Base64: {encoded:?}"));
    let text = String::from_utf8(bytes).unwrap_or_else(|e| panic!("decoded body is not UTF-8 ({e}): {encoded:?}"));
    rot13(&text)
}

/// A value encoded the older way (Moustique's README recipe, the clients
/// before December 2025): Base64, then ROT13 of the Base64 text.
pub fn enc_legacy(text: &str) -> String {
    rot13(&base64_encode(text.as_bytes()))
}

/// The reverse of [`enc_legacy`].
pub fn dec_legacy(encoded: &str) -> String {
    let bytes = base64_decode(&rot13(encoded.trim())).unwrap_or_else(|| panic!("not Base64 after ROT13: {encoded:?}"));
    String::from_utf8(bytes).unwrap_or_else(|e| panic!("decoded body is not UTF-8 ({e}): {encoded:?}"))
}

// ---------------------------------------------------------------------------
// JSON, read only.

/// A parsed JSON value.
pub type Json = serde_json::Value;

/// Panicking accessors of [`Json`], so a test reads `reply.field("topic").str()`
/// and a failure names what was missing and shows the document.
pub trait JsonExt {
    /// Parses a whole document, panicking with the text on failure.
    fn must_parse(text: &str) -> Self;
    /// Follows `a.b.c` through nested objects.
    fn path(&self, dotted: &str) -> Option<&Json>;
    /// The member `key`; panics naming it and the document.
    fn field(&self, key: &str) -> &Json;
    /// The text of a string; panics otherwise.
    fn str(&self) -> &str;
    /// The value of a number; panics otherwise.
    fn num(&self) -> f64;
    /// The items of an array; panics otherwise.
    fn items(&self) -> &[Json];
    /// The members of an object; panics otherwise.
    fn members(&self) -> &serde_json::Map<String, Json>;
    /// Every leaf under this value with its dotted path (`a.b`, `list.0`).
    fn leaves(&self) -> Vec<(String, &Json)>;
}

impl JsonExt for Json {
    fn must_parse(text: &str) -> Json {
        serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}"))
    }

    fn path(&self, dotted: &str) -> Option<&Json> {
        dotted.split('.').try_fold(self, |value, key| value.as_object()?.get(key))
    }

    fn field(&self, key: &str) -> &Json {
        self.get(key).unwrap_or_else(|| panic!("no {key:?} in {self}"))
    }

    fn str(&self) -> &str {
        self.as_str().unwrap_or_else(|| panic!("expected a JSON string, got {self}"))
    }

    fn num(&self) -> f64 {
        self.as_f64().unwrap_or_else(|| panic!("expected a JSON number, got {self}"))
    }

    fn items(&self) -> &[Json] {
        self.as_array().unwrap_or_else(|| panic!("expected a JSON array, got {self}"))
    }

    fn members(&self) -> &serde_json::Map<String, Json> {
        self.as_object().unwrap_or_else(|| panic!("expected a JSON object, got {self}"))
    }

    fn leaves(&self) -> Vec<(String, &Json)> {
        fn walk<'a>(value: &'a Json, prefix: String, out: &mut Vec<(String, &'a Json)>) {
            let join = |key: &str| if prefix.is_empty() { key.to_owned() } else { format!("{prefix}.{key}") };
            match value {
                Json::Object(members) => members.iter().for_each(|(k, v)| walk(v, join(k), out)),
                Json::Array(items) => items.iter().enumerate().for_each(|(i, v)| walk(v, join(&i.to_string()), out)),
                leaf => out.push((prefix, leaf)),
            }
        }
        let mut out = Vec::new();
        walk(self, String::new(), &mut out);
        out
    }
}

// HTTP over a raw socket.

/// A response as it came off the wire.
#[derive(Clone, Debug)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Header names lower-cased, values trimmed, in order.
    pub headers: Vec<(String, String)>,
    /// The body (de-chunked).
    pub body: Vec<u8>,
}

impl Response {
    /// The first header called `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Asserts the status, showing the body when it differs.
    pub fn assert_status(&self, status: u16, what: &str) -> &Self {
        assert_eq!(self.status, status, "{what}: status {} with body {:?}", self.status, self.text());
        self
    }

    /// Asserts an empty 200, the reply to a Moustique request that only acts.
    pub fn assert_empty_ok(&self, what: &str) {
        self.assert_status(200, what);
        assert!(self.body.is_empty(), "{what}: a request that only acts gets an empty body, got {:?}", self.text());
    }

    /// A Moustique data reply: 200, `text/plain; charset=utf-8`, the body
    /// the encoded JSON. Returns the JSON.
    pub fn moustique_json(&self, what: &str) -> Json {
        self.assert_status(200, what);
        let content_type = self.header("content-type").unwrap_or_default().to_ascii_lowercase().replace(' ', "");
        assert_eq!(content_type, "text/plain;charset=utf-8", "{what}: Content-Type of a Moustique data reply");
        let text = dec(&self.text());
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: the decoded body is not JSON ({e}): {text:?}"))
    }

    /// A plain-API JSON reply: 200, `application/json`. Returns the JSON.
    pub fn plain_json(&self, what: &str) -> Json {
        self.assert_status(200, what);
        let content_type = self.header("content-type").unwrap_or_default();
        assert!(content_type.starts_with("application/json"), "{what}: Content-Type {content_type:?}");
        Json::must_parse(&self.text())
    }
}

/// What reading the next response came to.
#[derive(Debug)]
pub enum Next {
    /// A whole response.
    Response(Response),
    /// Nothing whole within the time given.
    Timeout,
    /// The peer closed (or reset) the connection with no partial response
    /// left over.
    Closed,
}

/// A head and body to send, with `Host` and a `Content-Length` added (the
/// latter whenever there is a body, or the method is POST or PUT).
pub fn request_bytes(method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || method == "POST" || method == "PUT" {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// Parses one response at the start of `buf`. `eof` says the peer has
/// closed, which ends a body without a length. Returns the response and the
/// bytes it took, `Ok(None)` when more is needed.
fn parse_response(buf: &[u8], eof: bool) -> Result<Option<(Response, usize)>, String> {
    let mut header_slots = [httparse::EMPTY_HEADER; 64];
    let mut head = httparse::Response::new(&mut header_slots);
    let body_start = match head.parse(buf) {
        Ok(httparse::Status::Complete(used)) => used,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("a bad response head: {e}")),
    };
    let status = head.code.ok_or("no status code")?;
    let mut headers = Vec::new();
    for header in head.headers.iter() {
        let value = std::str::from_utf8(header.value).map_err(|_| format!("header {} is not UTF-8", header.name))?;
        headers.push((header.name.to_ascii_lowercase(), value.trim().to_owned()));
    }
    let mut response = Response { status, headers, body: Vec::new() };
    let rest = &buf[body_start..];
    let chunked = response.header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    if chunked {
        let mut at = 0;
        loop {
            let (size_len, size) = match httparse::parse_chunk_size(&rest[at..]) {
                Ok(httparse::Status::Complete(found)) => found,
                Ok(httparse::Status::Partial) => return Ok(None),
                Err(httparse::InvalidChunkSize) => {
                    return Err(format!("bad chunk size at {:?}", String::from_utf8_lossy(&rest[at..])));
                }
            };
            let size = usize::try_from(size).map_err(|_| format!("chunk size {size} too large"))?;
            at += size_len;
            if size == 0 {
                // No trailers are expected: just the final CRLF.
                if rest.len() < at + 2 {
                    return Ok(None);
                }
                return Ok(Some((response, body_start + at + 2)));
            }
            if rest.len() < at + size + 2 {
                return Ok(None);
            }
            response.body.extend_from_slice(&rest[at..at + size]);
            at += size + 2;
        }
    }
    if let Some(length) = response.header("content-length") {
        let length: usize = length.parse().map_err(|_| format!("bad Content-Length {length:?}"))?;
        if rest.len() < length {
            return Ok(None);
        }
        response.body = rest[..length].to_vec();
        return Ok(Some((response, body_start + length)));
    }
    if response.status == 204 || response.status == 304 || response.status < 200 {
        return Ok(Some((response, body_start)));
    }
    // No length: the body runs to the close.
    if !eof {
        return Ok(None);
    }
    response.body = rest.to_vec();
    Ok(Some((response, buf.len())))
}

/// One HTTP connection, written raw and read with deadlines.
#[derive(Debug)]
pub struct HttpConn {
    stream: TcpStream,
    buf: Vec<u8>,
    eof: bool,
}

impl HttpConn {
    /// Connects to `addr`.
    pub fn open(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect_timeout(&addr, WAIT).unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
        stream.set_nodelay(true).expect("TCP_NODELAY");
        HttpConn { stream, buf: Vec::new(), eof: false }
    }

    /// A connection already open.
    pub fn from_stream(stream: TcpStream) -> Self {
        HttpConn { stream, buf: Vec::new(), eof: false }
    }

    /// Writes bytes; panics if the connection is gone.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap_or_else(|e| panic!("write to the broker: {e}"));
    }

    /// Writes bytes; the broker may already have closed the connection.
    pub fn try_send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Closes the write half.
    pub fn shutdown_write(&self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }

    /// The next response, or what happened instead within `timeout`.
    pub fn next_within(&mut self, timeout: Duration) -> Next {
        let deadline = Instant::now() + timeout;
        loop {
            match parse_response(&self.buf, self.eof) {
                Ok(Some((response, used))) => {
                    self.buf.drain(..used);
                    return Next::Response(response);
                }
                Ok(None) if self.eof => {
                    assert!(
                        self.buf.is_empty(),
                        "the connection ended inside a response: {:?}",
                        String::from_utf8_lossy(&self.buf)
                    );
                    return Next::Closed;
                }
                Ok(None) => {}
                Err(e) => panic!("a malformed response ({e}): {:?}", String::from_utf8_lossy(&self.buf)),
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Next::Timeout;
            }
            self.stream.set_read_timeout(Some(left)).expect("set a read timeout");
            let mut chunk = [0u8; 64 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => self.eof = true,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => self.eof = true,
                Err(e) => panic!("read from the broker: {e}"),
            }
        }
    }

    /// The next response; panics unless one arrives within [`WAIT`].
    pub fn response(&mut self) -> Response {
        self.response_within(WAIT)
    }

    /// The next response; panics unless one arrives within `timeout`.
    pub fn response_within(&mut self, timeout: Duration) -> Response {
        match self.next_within(timeout) {
            Next::Response(response) => response,
            other => panic!("expected a response within {timeout:?}, got {other:?}"),
        }
    }

    /// Asserts the broker closes the connection within [`WAIT`] without
    /// sending anything more.
    pub fn expect_closed(&mut self) {
        match self.next_within(WAIT) {
            Next::Closed => {}
            other => panic!("expected the broker to close the connection, got {other:?}"),
        }
    }

    /// Asserts nothing arrives, and the connection stays open, for `window`.
    pub fn expect_silence(&mut self, window: Duration) {
        match self.next_within(window) {
            Next::Timeout => {}
            other => panic!("expected nothing for {window:?}, got {other:?}"),
        }
    }

    /// Sends one keep-alive request and reads its response.
    pub fn request(&mut self, method: &str, target: &str, body: &[u8]) -> Response {
        self.send(&request_bytes(method, target, &[], body));
        self.response()
    }

    /// A Moustique request over this connection: POST with the values
    /// encoded in a form body.
    pub fn moustique(&mut self, endpoint: &str, params: &[(&str, &str)]) -> Response {
        self.send(&moustique_request("POST", endpoint, params));
        self.response()
    }
}

/// Percent-encodes a form component the way browsers and `requests` do:
/// everything but `A-Z a-z 0-9 - . _ ~` (and space as `+`) as `%XX`.
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(char::from(byte)),
            b' ' => out.push('+'),
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

/// `name=value&...`, percent-encoded, values as given.
pub fn form(params: &[(&str, &str)]) -> String {
    params.iter().map(|(n, v)| format!("{}={}", percent_encode(n), percent_encode(v))).collect::<Vec<_>>().join("&")
}

/// `name=enc(value)&...`, the way the Moustique clients send parameters.
pub fn encoded_form(params: &[(&str, &str)]) -> String {
    let encoded: Vec<(&str, String)> = params.iter().map(|(n, v)| (*n, enc(v))).collect();
    let borrowed: Vec<(&str, &str)> = encoded.iter().map(|(n, v)| (*n, v.as_str())).collect();
    form(&borrowed)
}

/// A Moustique request: `POST /ENDPOINT` (or PUT) with the encoded form
/// as body and the form Content-Type.
pub fn moustique_request(method: &str, endpoint: &str, params: &[(&str, &str)]) -> Vec<u8> {
    request_bytes(
        method,
        &format!("/{endpoint}"),
        &[("Content-Type", "application/x-www-form-urlencoded")],
        encoded_form(params).as_bytes(),
    )
}

/// One request on a fresh connection that is closed after the response.
pub fn call(addr: SocketAddr, method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Response {
    let mut conn = HttpConn::open(addr);
    let mut all_headers = vec![("Connection", "close")];
    all_headers.extend_from_slice(headers);
    conn.send(&request_bytes(method, target, &all_headers, body));
    conn.response()
}

/// A Moustique request (POST, encoded form) on a fresh connection.
pub fn moustique(addr: SocketAddr, endpoint: &str, params: &[(&str, &str)]) -> Response {
    let body = encoded_form(params);
    call(
        addr,
        "POST",
        &format!("/{endpoint}"),
        &[("Content-Type", "application/x-www-form-urlencoded")],
        body.as_bytes(),
    )
}

/// A Moustique data request, its reply decoded (see [`Response::moustique_json`]).
pub fn moustique_json(addr: SocketAddr, endpoint: &str, params: &[(&str, &str)]) -> Json {
    moustique(addr, endpoint, params).moustique_json(endpoint)
}

/// `/POST` with a `from`; asserts the empty 200.
pub fn post(addr: SocketAddr, topic: &str, message: &str, from: &str) {
    moustique(addr, "POST", &[("topic", topic), ("message", message), ("from", from)])
        .assert_empty_ok(&format!("POST {topic}"));
}

/// `/SUBSCRIBE`; asserts the empty 200.
pub fn subscribe(addr: SocketAddr, client: &str, filter: &str) {
    moustique(addr, "SUBSCRIBE", &[("topic", filter), ("client", client)])
        .assert_empty_ok(&format!("SUBSCRIBE {client} {filter}"));
}

/// One `/PICKUP`, flattened to `(filter, message object)` pairs in order.
pub fn pickup(addr: SocketAddr, client: &str) -> Vec<(String, Json)> {
    let reply = moustique_json(addr, "PICKUP", &[("client", client)]);
    let mut out = Vec::new();
    for (filter, messages) in reply.members() {
        for message in messages.items() {
            out.push((filter.clone(), message.clone()));
        }
    }
    out
}

/// PICKUPs until a message on `topic` has arrived (within [`WAIT`]);
/// returns everything picked up, in order.
pub fn pickup_until(addr: SocketAddr, client: &str, topic: &str) -> Vec<(String, Json)> {
    let deadline = Instant::now() + WAIT;
    let mut all = Vec::new();
    loop {
        all.extend(pickup(addr, client));
        if all.iter().any(|(_, m)| m.get("topic") == Some(&Json::String(topic.to_owned()))) {
            return all;
        }
        assert!(Instant::now() < deadline, "{client}: no message on {topic:?} within {WAIT:?}; picked up {all:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The `(filter, topic, message)` triples of a pickup, for comparisons.
pub fn triples(picked: &[(String, Json)]) -> Vec<(String, String, String)> {
    picked
        .iter()
        .map(|(f, m)| (f.clone(), m.field("topic").str().to_owned(), m.field("message").str().to_owned()))
        .collect()
}

/// Polls `check` every 20 ms until it returns `Some`, at most `timeout`;
/// panics with `what` otherwise.
pub fn eventually<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "not within {timeout:?}: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Asserts the shape of a message object: the six fields, with
/// `updated_nicedatetime` as `YYYY-MM-DD HH:MM:SS`.
pub fn assert_message_object(message: &Json, topic: &str, text: &str, from: &str) {
    assert_eq!(message.field("topic").str(), topic, "{message}");
    assert_eq!(message.field("message").str(), text, "{message}");
    assert_eq!(message.field("from").str(), from, "{message}");
    let time = message.field("updated_time").num();
    assert!(time > 1.6e9 && time.fract() == 0.0, "updated_time is whole Unix seconds: {message}");
    let nice = message.field("updated_nicedatetime").str();
    let shape: String = nice.chars().map(|c| if c.is_ascii_digit() { 'D' } else { c }).collect();
    assert_eq!(shape, "DDDD-DD-DD DD:DD:DD", "updated_nicedatetime {nice:?}");
    assert_eq!(message.field("ip").str(), "127.0.0.1", "{message}");
}

/// Now, in Unix seconds.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64()
}

// ---------------------------------------------------------------------------
// Outside programs (found by `super::tools`, which fails a test naming
// `bash tests/run.sh` when one is missing; named here for the HTTP tests).

pub use super::tools::{client_script, python_with_requests, require_tool};

/// Runs `command` to completion, killing it after `timeout`; panics with
/// everything it printed if it fails or runs over.
pub fn run_checked(mut command: Command, timeout: Duration, what: &str) -> Output {
    let mut child =
        command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap_or_else(|e| panic!("{what}: spawn: {e}"));
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut text);
            }
            text
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let status = wait_child(&mut child, timeout);
    if status.is_none() {
        let _ = child.kill();
    }
    let status = status.unwrap_or_else(|| child.wait().expect("reap a killed child"));
    let output = Output { status, stdout: stdout.join().unwrap(), stderr: stderr.join().unwrap() };
    let shown = format!(
        "--- stdout:\n{}\n--- stderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!("{what}:\n{shown}");
    assert!(output.status.success(), "{what} failed ({}) or ran over {timeout:?}:\n{shown}", output.status);
    output
}

// ---------------------------------------------------------------------------
// Server-Sent Events through `curl -N`.

/// One item of an event stream.
#[derive(Clone, Debug, PartialEq)]
pub enum SseItem {
    /// An event: its name (`message` when absent) and its data lines joined.
    Event { event: String, data: String },
    /// A comment line (heartbeat), without the ':'.
    Comment(String),
}

/// `curl -sS -N -i URL` as a child, its output read line by line with
/// deadlines. The child is killed when dropped.
pub struct CurlSse {
    child: Child,
    lines: Receiver<String>,
    /// The response head (status line first), read by [`CurlSse::start`].
    pub head: Vec<String>,
}

impl CurlSse {
    /// Starts curl on `url` and reads the response head.
    pub fn start(url: &str) -> Self {
        Self::start_with(&[], url)
    }

    /// [`CurlSse::start`] with more curl options (`--cacert PEM`, say).
    pub fn start_with(options: &[&str], url: &str) -> Self {
        let curl = require_tool("curl", "apt-get install curl");
        let mut child = Command::new(curl)
            .args(["-sS", "-N", "-i"])
            .args(options)
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn curl");
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().expect("piped stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line.trim_end_matches('\r').to_owned()).is_err() {
                    break;
                }
            }
        });
        let mut sse = CurlSse { child, lines, head: Vec::new() };
        loop {
            let line = sse.line(WAIT).unwrap_or_else(|| panic!("no complete response head from {url}"));
            if line.is_empty() {
                break;
            }
            sse.head.push(line);
        }
        sse
    }

    /// A response header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.iter().skip(1).find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    /// The next line within `timeout`; `None` on timeout or end of stream.
    fn line(&mut self, timeout: Duration) -> Option<String> {
        self.lines.recv_timeout(timeout).ok()
    }

    /// The next event or comment, within `timeout` (panics otherwise).
    pub fn next_item(&mut self, timeout: Duration) -> SseItem {
        let deadline = Instant::now() + timeout;
        let mut event = None;
        let mut data: Vec<String> = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.line(left).unwrap_or_else(|| {
                panic!("no whole event within {timeout:?} (ended or timed out; partial: {event:?} {data:?})")
            });
            if let Some(comment) = line.strip_prefix(':') {
                if event.is_none() && data.is_empty() {
                    return SseItem::Comment(comment.trim().to_owned());
                }
                continue;
            }
            if line.is_empty() {
                if event.is_none() && data.is_empty() {
                    continue;
                }
                return SseItem::Event { event: event.unwrap_or_else(|| "message".into()), data: data.join("\n") };
            }
            let (field, value) = line.split_once(':').unwrap_or((&line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => event = Some(value.to_owned()),
                "data" => data.push(value.to_owned()),
                _ => {}
            }
        }
    }

    /// The next `message` event's data as JSON, skipping heartbeats.
    pub fn next_message(&mut self) -> Json {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_item(left) {
                SseItem::Comment(_) => continue,
                SseItem::Event { event, data } => {
                    assert_eq!(event, "message", "every delivery is a `message` event: {data}");
                    return Json::must_parse(&data);
                }
            }
        }
    }
}

impl Drop for CurlSse {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs curl with `args` (`-sS` added) and returns its stdout; panics
/// unless it exits 0 within [`WAIT`].
pub fn curl(args: &[&str]) -> String {
    let mut command = Command::new(require_tool("curl", "apt-get install curl"));
    command.arg("-sS").args(args).stdin(Stdio::null());
    let output = run_checked(command, WAIT, &format!("curl {args:?}"));
    String::from_utf8(output.stdout).expect("curl printed UTF-8")
}

/// `curl` with `-w '\n%{http_code}'` appended: (status, body).
pub fn curl_status(args: &[&str]) -> (u16, String) {
    let mut all = args.to_vec();
    all.extend(["-w", "\n%{http_code}"]);
    let out = curl(&all);
    let (body, code) = out.rsplit_once('\n').expect("curl's status line");
    (code.trim().parse().unwrap_or_else(|_| panic!("curl status {code:?}")), body.to_owned())
}
