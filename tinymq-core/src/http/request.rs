//! Request heads, parsed incrementally with httparse, and the limits that
//! turn hostile input into the replies README.md ("Coming from Moustique")
//! names: 431 for a head
//! over its limit, 413 for a declared body over its limit (decided from the
//! head alone, before any of the body is read), 411 for a chunked body,
//! 405 for a method the API does not use, 400 for anything malformed.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use smallvec::SmallVec;

/// Bounds on one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpLimits {
    /// The request line and headers together, in bytes (default 16 KiB).
    pub max_head_bytes: usize,
    /// Header lines (default 64).
    pub max_headers: usize,
    /// A declared body, in bytes (default 1 MiB plus the overhead of
    /// encoding a 1 MiB payload as a form: 1.5 MiB).
    pub max_body_bytes: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits { max_head_bytes: 16 * 1024, max_headers: 64, max_body_bytes: 3 << 19 }
    }
}

/// The methods the API uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// GET: parameters in the query string.
    Get,
    /// POST: parameters in a form body (Moustique) or a raw body (plain API).
    Post,
    /// PUT: as POST (the JavaScript client's PUTVAL).
    Put,
    /// OPTIONS: a browser's CORS preflight.
    Options,
}

/// A parsed request head. Owned and small: path, query and a few headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestHead {
    /// The method.
    pub method: Method,
    /// The path, before any `?`.
    pub path: String,
    /// The query string after `?`, undecoded (see [`super::encoding::parse_form`]).
    pub query: String,
    /// Whether the connection stays open after the response: HTTP/1.1
    /// unless `Connection: close`, HTTP/1.0 only with `Connection: keep-alive`.
    pub keep_alive: bool,
    /// The declared body length (0 when absent).
    pub content_length: usize,
    /// The `Content-Type`, if any (Moustique clients may omit it).
    pub content_type: Option<String>,
    /// Credentials from `Authorization: Basic` (the plain API's).
    pub basic_auth: Option<(String, String)>,
    /// The headers a WebSocket upgrade reads (`Upgrade`, `Connection`,
    /// `Sec-WebSocket-*`), by name and value, kept only when the request
    /// has an `Upgrade` header (see [`super::upgrade`]).
    pub upgrade: Vec<(String, Vec<u8>)>,
}

/// The result of [`parse_head`] that did not fail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// The head is not complete yet (and still within its limit).
    Partial,
    /// A whole head, and how many bytes of the input it took; the body's
    /// `content_length` bytes follow.
    Complete {
        /// The head.
        head: RequestHead,
        /// Bytes of the input the head took.
        head_len: usize,
    },
}

/// Why a request is refused; [`RequestError::status`] is the reply.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// The head is over its byte or header-count limit.
    #[error("request header fields too large")]
    HeadTooLarge,
    /// The declared body is over its limit.
    #[error("body of {len} bytes is over the limit of {max}")]
    BodyTooLarge {
        /// The declared length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A chunked body: the API needs a Content-Length.
    #[error("a Content-Length is required")]
    LengthRequired,
    /// A method other than GET, POST, PUT or OPTIONS.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// Anything malformed, said in a few words.
    #[error("{0}")]
    Malformed(&'static str),
}

impl RequestError {
    /// The HTTP status code the peer gets.
    pub fn status(&self) -> u16 {
        match self {
            RequestError::HeadTooLarge => 431,
            RequestError::BodyTooLarge { .. } => 413,
            RequestError::LengthRequired => 411,
            RequestError::MethodNotAllowed => 405,
            RequestError::Malformed(_) => 400,
        }
    }
}

/// Parses the request head at the start of `input`.
pub fn parse_head(input: &[u8], limits: &HttpLimits) -> Result<Parsed, RequestError> {
    // On the stack up to the default limit: parsing is per read, so no
    // allocation here.
    let mut headers: SmallVec<[httparse::Header<'_>; 64]> =
        SmallVec::from_elem(httparse::EMPTY_HEADER, limits.max_headers);
    let mut request = httparse::Request::new(&mut headers);
    let head_len = match request.parse(input) {
        Ok(httparse::Status::Partial) if input.len() > limits.max_head_bytes => {
            return Err(RequestError::HeadTooLarge);
        }
        Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
        Ok(httparse::Status::Complete(len)) if len > limits.max_head_bytes => return Err(RequestError::HeadTooLarge),
        Ok(httparse::Status::Complete(len)) => len,
        Err(httparse::Error::TooManyHeaders) => return Err(RequestError::HeadTooLarge),
        Err(_) => return Err(RequestError::Malformed("malformed request")),
    };
    let method = match request.method {
        Some("GET") => Method::Get,
        Some("POST") => Method::Post,
        Some("PUT") => Method::Put,
        Some("OPTIONS") => Method::Options,
        _ => return Err(RequestError::MethodNotAllowed),
    };
    let target = request.path.ok_or(RequestError::Malformed("no request target"))?;
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let http11 = request.version == Some(1);

    let mut connection: Option<&[u8]> = None;
    let mut content_length: Option<usize> = None;
    let mut content_type = None;
    let mut basic_auth = None;
    let upgrading = request.headers.iter().any(|h| h.name.eq_ignore_ascii_case("upgrade"));
    let mut upgrade = Vec::new();
    for header in request.headers.iter() {
        if upgrading && is_upgrade_header(header.name) {
            upgrade.push((header.name.to_owned(), header.value.to_vec()));
        }
        let name = header.name;
        if name.eq_ignore_ascii_case("connection") {
            connection = Some(header.value);
        } else if name.eq_ignore_ascii_case("content-length") {
            let len = std::str::from_utf8(header.value)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or(RequestError::Malformed("bad Content-Length"))?;
            // Two different lengths would let a proxy and us disagree.
            if content_length.is_some_and(|known| known != len) {
                return Err(RequestError::Malformed("conflicting Content-Length"));
            }
            content_length = Some(len);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(RequestError::LengthRequired);
        } else if name.eq_ignore_ascii_case("content-type") {
            content_type = Some(String::from_utf8_lossy(header.value).into_owned());
        } else if name.eq_ignore_ascii_case("authorization") {
            basic_auth = Some(parse_basic(header.value)?);
        }
    }
    let content_length = content_length.unwrap_or(0);
    if content_length > limits.max_body_bytes {
        return Err(RequestError::BodyTooLarge { len: content_length, max: limits.max_body_bytes });
    }
    let keep_alive = match connection {
        Some(value) if value.eq_ignore_ascii_case(b"close") => false,
        Some(value) if value.eq_ignore_ascii_case(b"keep-alive") => true,
        _ => http11,
    };
    Ok(Parsed::Complete {
        head: RequestHead {
            method,
            path: path.to_owned(),
            query: query.to_owned(),
            keep_alive,
            content_length,
            content_type,
            basic_auth,
            upgrade,
        },
        head_len,
    })
}

/// Whether a WebSocket upgrade reads this header.
fn is_upgrade_header(name: &str) -> bool {
    ["upgrade", "connection"].iter().any(|n| name.eq_ignore_ascii_case(n))
        || name.get(..14).is_some_and(|prefix| prefix.eq_ignore_ascii_case("sec-websocket-"))
}

/// `Basic base64(user:password)`.
fn parse_basic(value: &[u8]) -> Result<(String, String), RequestError> {
    const BAD: RequestError = RequestError::Malformed("bad Authorization header");
    let value = std::str::from_utf8(value).map_err(|_| BAD)?;
    let (scheme, token) = value.trim().split_once(' ').ok_or(BAD)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(BAD);
    }
    let decoded = String::from_utf8(STANDARD.decode(token.trim()).map_err(|_| BAD)?).map_err(|_| BAD)?;
    let (user, password) = decoded.split_once(':').ok_or(BAD)?;
    Ok((user.to_owned(), password.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(input: &[u8]) -> (RequestHead, usize) {
        match parse_head(input, &HttpLimits::default()) {
            Ok(Parsed::Complete { head, head_len }) => (head, head_len),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_moustique_post_parses_at_every_split() {
        let request = b"POST /POST HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\ntopic=LD%3D";
        let head_end = request.len() - 11;
        for cut in 0..head_end {
            assert_eq!(parse_head(&request[..cut], &HttpLimits::default()), Ok(Parsed::Partial), "cut {cut}");
        }
        let (head, head_len) = complete(request);
        assert_eq!(head_len, head_end);
        assert_eq!(
            (head.method, head.path.as_str(), head.content_length, head.keep_alive),
            (Method::Post, "/POST", 11, true)
        );
        assert_eq!(head.content_type, None, "clients may omit it");
    }

    #[test]
    fn pipelined_requests_are_found_one_after_another() {
        let two = b"GET /VERSION HTTP/1.1\r\n\r\nGET /api/v1/health?x=1 HTTP/1.1\r\n\r\n";
        let (first, len) = complete(two);
        assert_eq!(first.path, "/VERSION");
        let (second, _) = complete(&two[len..]);
        assert_eq!((second.path.as_str(), second.query.as_str()), ("/api/v1/health", "x=1"));
    }

    #[test]
    fn keep_alive_follows_the_version_and_connection_header() {
        let cases: [(&[u8], bool); 5] = [
            (b"GET / HTTP/1.1\r\n\r\n", true),
            (b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", false),
            (b"GET / HTTP/1.0\r\n\r\n", false),
            (b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", true),
            (b"GET / HTTP/1.1\r\nconnection: CLOSE\r\n\r\n", false),
        ];
        for (request, keep_alive) in cases {
            assert_eq!(complete(request).0.keep_alive, keep_alive, "{}", String::from_utf8_lossy(request));
        }
    }

    #[test]
    fn limits_give_their_statuses() {
        let limits = HttpLimits { max_head_bytes: 64, max_headers: 4, max_body_bytes: 100 };
        let status = |input: &[u8]| parse_head(input, &limits).unwrap_err().status();
        // A head that never ends is refused once it passes the limit.
        assert_eq!(status(&[b"GET /".as_slice(), &[b'a'; 80]].concat()), 431);
        assert_eq!(status(b"GET / HTTP/1.1\r\na: 1\r\nb: 2\r\nc: 3\r\nd: 4\r\ne: 5\r\n\r\n"), 431);
        assert_eq!(status(b"POST / HTTP/1.1\r\nContent-Length: 101\r\n\r\n"), 413);
        assert_eq!(status(b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n"), 400);
        assert_eq!(status(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"), 411);
        assert_eq!(status(b"DELETE / HTTP/1.1\r\n\r\n"), 405);
        assert_eq!(status(b"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"), 400);
        assert_eq!(status(b"\x00\x01 garbage\r\n\r\n"), 400);
        assert_eq!(parse_head(b"POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\n", &limits).map(|_| ()), Ok(()));
    }

    #[test]
    fn basic_auth_is_decoded() {
        // "alice:s3cret:with:colons"
        let (head, _) = complete(b"GET / HTTP/1.1\r\nAuthorization: Basic YWxpY2U6czNjcmV0OndpdGg6Y29sb25z\r\n\r\n");
        assert_eq!(head.basic_auth, Some(("alice".into(), "s3cret:with:colons".into())));
        for bad in ["Bearer abc", "Basic !!!", "Basic YWxpY2U="] {
            let request = format!("GET / HTTP/1.1\r\nAuthorization: {bad}\r\n\r\n");
            assert_eq!(parse_head(request.as_bytes(), &HttpLimits::default()).unwrap_err().status(), 400, "{bad}");
        }
    }
}
