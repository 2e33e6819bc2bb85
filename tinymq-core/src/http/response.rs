//! Responses, written as HTTP/1.1 bytes into a buffer the caller owns.

use std::borrow::Cow;

use serde::Serialize;

use super::encoding::{Encoding, encode_value};
use super::ui::UiFile;

/// A response to one request: status, body and its type.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The `Content-Type` of the body.
    pub content_type: &'static str,
    /// The body.
    pub body: Cow<'static, [u8]>,
    /// A 401 that asks a browser for HTTP Basic credentials
    /// (`WWW-Authenticate`), for the pages people open.
    pub challenge: bool,
    /// More header lines, each ending in CRLF (the web UI's caching and
    /// security policy); usually empty.
    pub headers: &'static str,
    /// Seconds a refused peer should wait (`Retry-After`), on a 429.
    pub retry_after: Option<u64>,
}

/// `text/plain; charset=utf-8`: Moustique's data responses and every error.
pub const TEXT: &str = "text/plain; charset=utf-8";
/// JSON, for the plain API.
pub const JSON: &str = "application/json";
pub use super::ui::HTML;
/// The Prometheus text exposition format.
pub const PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";

impl Response {
    /// `200` with an empty body (what Moustique's acting endpoints return).
    pub fn ok() -> Self {
        Response {
            status: 200,
            content_type: TEXT,
            body: Cow::Borrowed(b""),
            challenge: false,
            headers: "",
            retry_after: None,
        }
    }

    /// `204 No Content`.
    pub fn no_content() -> Self {
        Response {
            status: 204,
            content_type: TEXT,
            body: Cow::Borrowed(b""),
            challenge: false,
            headers: "",
            retry_after: None,
        }
    }

    /// A short plain-text body: errors, `ok`.
    pub fn text(status: u16, text: impl Into<Cow<'static, str>>) -> Self {
        let body = match text.into() {
            Cow::Borrowed(s) => Cow::Borrowed(s.as_bytes()),
            Cow::Owned(s) => Cow::Owned(s.into_bytes()),
        };
        Response { status, content_type: TEXT, body, challenge: false, headers: "", retry_after: None }
    }

    /// A JSON document, as the plain API sends it.
    pub fn json(value: &(impl Serialize + ?Sized)) -> Self {
        Response {
            status: 200,
            content_type: JSON,
            body: Cow::Owned(document_bytes(value)),
            challenge: false,
            headers: "",
            retry_after: None,
        }
    }

    /// A JSON document encoded the Moustique way, in `encoding`'s order
    /// (the order the request came in), as `text/plain`.
    pub fn moustique_json(value: &(impl Serialize + ?Sized), encoding: Encoding) -> Self {
        Response {
            status: 200,
            content_type: TEXT,
            body: Cow::Owned(encode_value(&document_bytes(value), encoding).into_bytes()),
            challenge: false,
            headers: "",
            retry_after: None,
        }
    }

    /// A body of any type with status 200.
    pub fn with_body(content_type: &'static str, body: impl Into<Cow<'static, [u8]>>) -> Self {
        Response { status: 200, content_type, body: body.into(), challenge: false, headers: "", retry_after: None }
    }

    /// A file of the web UI, with its headers.
    pub fn ui(file: UiFile) -> Self {
        Response {
            status: 200,
            content_type: file.content_type(),
            body: Cow::Borrowed(file.bytes()),
            challenge: false,
            headers: file.headers(),
            retry_after: None,
        }
    }

    /// The same response asking for HTTP Basic credentials.
    pub fn with_challenge(self) -> Self {
        Response { challenge: true, ..self }
    }

    /// `429 Too Many Requests` with a `Retry-After` of `secs`.
    pub fn too_many_requests(text: impl Into<Cow<'static, str>>, secs: u64) -> Self {
        Response { retry_after: Some(secs), ..Response::text(429, text) }
    }

    /// Appends the status line, headers and body to `out`. `keep_alive`
    /// decides the `Connection` header (the connection closes after a
    /// response written with `false`).
    pub fn write(&self, keep_alive: bool, out: &mut Vec<u8>) {
        write_status_line(self.status, out);
        // 204 carries neither a body nor a Content-Length (RFC 9110 8.6).
        if self.status != 204 {
            out.extend_from_slice(b"Content-Type: ");
            out.extend_from_slice(self.content_type.as_bytes());
            out.extend_from_slice(b"\r\nContent-Length: ");
            out.extend_from_slice(self.body.len().to_string().as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        if self.challenge {
            out.extend_from_slice(b"WWW-Authenticate: Basic realm=\"tinymq\", charset=\"UTF-8\"\r\n");
        }
        out.extend_from_slice(self.headers.as_bytes());
        if let Some(secs) = self.retry_after {
            out.extend_from_slice(b"Retry-After: ");
            out.extend_from_slice(secs.to_string().as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(COMMON_HEADERS);
        out.extend_from_slice(if keep_alive {
            b"Connection: keep-alive\r\n\r\n"
        } else {
            b"Connection: close\r\n\r\n"
        });
        if self.status != 204 {
            out.extend_from_slice(&self.body);
        }
    }
}

/// Sent on every response: browsers' pages on other origins may call the
/// API (Moustique's browser client does).
const COMMON_HEADERS: &[u8] = b"Server: tinymq\r\nAccess-Control-Allow-Origin: *\r\n";

/// The head that opens a Server-Sent Events stream. It has no length: the
/// stream ends when the connection does.
pub fn write_event_stream_head(out: &mut Vec<u8>) {
    write_status_line(200, out);
    out.extend_from_slice(b"Content-Type: text/event-stream\r\nCache-Control: no-cache\r\n");
    out.extend_from_slice(COMMON_HEADERS);
    out.extend_from_slice(b"Connection: keep-alive\r\n\r\n");
}

/// The answer to a CORS preflight (`OPTIONS`): every method the API uses.
pub fn write_preflight(keep_alive: bool, out: &mut Vec<u8>) {
    write_status_line(204, out);
    out.extend_from_slice(COMMON_HEADERS);
    out.extend_from_slice(
        b"Access-Control-Allow-Methods: GET, POST, PUT, OPTIONS\r\n\
          Access-Control-Allow-Headers: Authorization, Content-Type\r\nAccess-Control-Max-Age: 86400\r\n",
    );
    out.extend_from_slice(if keep_alive { b"Connection: keep-alive\r\n\r\n" } else { b"Connection: close\r\n\r\n" });
}

fn write_status_line(status: u16, out: &mut Vec<u8>) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(reason_phrase(status).as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// The reason phrase of the statuses the broker sends.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// A document as compact JSON. The documents are values, strings and
/// structs with string keys, which serialize without error.
fn document_bytes(document: &(impl Serialize + ?Sized)) -> Vec<u8> {
    serde_json::to_vec(document).expect("a document serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(response: &Response, keep_alive: bool) -> String {
        let mut out = Vec::new();
        response.write(keep_alive, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_text_response_has_its_length_and_connection() {
        let text = written(&Response::text(404, "no such path"), false);
        assert!(text.starts_with("HTTP/1.1 404 Not Found\r\n"), "{text}");
        assert!(text.contains("\r\nContent-Length: 12\r\n"), "{text}");
        assert!(text.contains("\r\nConnection: close\r\n\r\nno such path"), "{text}");
    }

    #[test]
    fn too_many_requests_says_when_to_retry() {
        let text = written(&Response::too_many_requests("slow down", 7), false);
        assert!(text.starts_with("HTTP/1.1 429 Too Many Requests\r\n"), "{text}");
        assert!(text.contains("\r\nRetry-After: 7\r\n"), "{text}");
        assert!(!written(&Response::text(404, "x"), false).contains("Retry-After"));
    }

    #[test]
    fn no_content_has_no_length() {
        let text = written(&Response::no_content(), true);
        assert!(text.starts_with("HTTP/1.1 204 No Content\r\n"), "{text}");
        assert!(!text.contains("Content-Length"), "{text}");
        assert!(text.ends_with("Connection: keep-alive\r\n\r\n"), "{text}");
    }

    #[test]
    fn the_page_is_html_never_cached_stale_with_its_policy() {
        let text = written(&Response::ui(UiFile::Page), true);
        assert!(text.contains("\r\nContent-Type: text/html; charset=utf-8\r\n"), "{text}");
        assert!(text.contains("\r\nCache-Control: no-cache\r\n"), "{text}");
        assert!(text.contains("\r\nContent-Security-Policy: default-src 'self'; "), "{text}");
        let script = written(&Response::ui(UiFile::Script), true);
        assert!(script.contains("\r\nContent-Type: text/javascript; charset=utf-8\r\n"), "{script}");
        assert!(!script.contains("Content-Security-Policy"), "{script}");
    }

    #[test]
    fn moustique_json_is_encoded_text() {
        for encoding in [Encoding::Current, Encoding::Legacy] {
            let response = Response::moustique_json(&serde_json::json!("0.1.0"), encoding);
            assert_eq!(response.content_type, TEXT);
            let decoded = super::super::encoding::decode_value(&response.body, encoding);
            assert_eq!(decoded, b"\"0.1.0\"");
        }
    }
}
