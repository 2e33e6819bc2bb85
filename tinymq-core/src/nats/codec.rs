//! The NATS client protocol on the wire: a parser of what the server sends
//! and an encoder of what the client sends.
//!
//! Every operation is a control line ended by `\r\n`, with an operation name
//! matched case-insensitively and arguments separated by runs of spaces or
//! tabs; `MSG` and `HMSG` are followed by a payload of the declared size and
//! another `\r\n`. This follows `server/parser.go` of nats-server, which also
//! takes a bare `\n` as a line end; so does [`parse`].
//!
//! [`parse`] is incremental in the httparse sense: it takes whatever bytes
//! have arrived and returns either a whole [`ServerOp`] borrowing from them
//! and the number of bytes it took, or [`Parsed::Partial`]. A control line is
//! refused as soon as it is longer than its limit without an end, and a
//! declared size as soon as its control line has arrived, so the caller never
//! buffers more than one operation within [`ParseLimits`].

use super::headers::Headers;

/// The server's default `max_control_line` (`MAX_CONTROL_LINE_SIZE`): a
/// longer PUB or SUB line is refused with `-ERR`.
pub const MAX_CONTROL_LINE: usize = 4096;

/// The server's default `max_payload` (`MAX_PAYLOAD_SIZE`), used until
/// INFO names the real one.
pub const DEFAULT_MAX_PAYLOAD: usize = 1 << 20;

/// The first line of every header block (`NATS/1.0`, then an optional
/// status code and description).
pub const HEADER_VERSION: &[u8] = b"NATS/1.0";

/// Upper bounds on one received operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParseLimits {
    /// Longest control line other than INFO, without its `\r\n`.
    pub max_control_line: usize,
    /// Longest INFO line: it carries JSON with every cluster URL, so it can
    /// be longer than other lines (default 64 KiB).
    pub max_info_line: usize,
    /// Largest declared `MSG` or `HMSG` size, headers included.
    pub max_payload: usize,
}

impl Default for ParseLimits {
    fn default() -> Self {
        ParseLimits { max_control_line: MAX_CONTROL_LINE, max_info_line: 64 * 1024, max_payload: DEFAULT_MAX_PAYLOAD }
    }
}

impl ParseLimits {
    /// The most bytes one operation can take: what a caller may have to
    /// hold before [`parse`] answers.
    pub fn max_op_len(&self) -> usize {
        let msg = self.max_control_line + 2 + self.max_payload + 2;
        msg.max(self.max_info_line + 2)
    }
}

/// A message delivered by `MSG` or `HMSG`, borrowing from the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Msg<'a> {
    /// The subject it was published to. Bytes: the server does not insist
    /// on UTF-8, and one odd publisher must not break the connection.
    pub subject: &'a [u8],
    /// The subscription id it is delivered for, as the client sent it.
    pub sid: &'a [u8],
    /// The reply subject, if the publisher gave one.
    pub reply: Option<&'a [u8]>,
    /// The raw header block (`NATS/1.0\r\n...\r\n\r\n`), for `HMSG` only.
    pub headers: Option<&'a [u8]>,
    /// The payload.
    pub payload: &'a [u8],
}

/// One operation from the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerOp<'a> {
    /// `INFO {json}`: the JSON text, for [`super::ServerInfo::from_json`].
    Info(&'a str),
    /// `MSG` or `HMSG`.
    Msg(Msg<'a>),
    /// `PING`: answer with `PONG`.
    Ping,
    /// `PONG`: the answer to our `PING`.
    Pong,
    /// `+OK`: only in verbose mode, which we do not ask for.
    Ok,
    /// `-ERR 'text'`: the text without its quotes.
    Err(&'a str),
}

/// The result of one [`parse`] call that did not fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// A whole operation, and how many bytes of the input it took.
    Complete {
        /// The operation, borrowing from the input.
        op: ServerOp<'a>,
        /// Bytes consumed from the start of the input.
        consumed: usize,
    },
    /// Not enough bytes yet: call again with the same bytes and more.
    Partial,
}

/// Why the server's bytes cannot be parsed. Every variant is fatal: the
/// stream has lost its framing, so the connection must be closed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The line does not start with an operation a server sends.
    #[error("unknown operation {0:?}")]
    UnknownOp(String),
    /// A control line is longer than its limit.
    #[error("control line over the limit of {max} bytes")]
    ControlLineTooLong {
        /// The limit in force.
        max: usize,
    },
    /// The arguments of an operation are missing, too many, or a size is
    /// not a decimal number.
    #[error("bad arguments to {op}")]
    BadArguments {
        /// The operation.
        op: &'static str,
    },
    /// A declared message size is over the limit.
    #[error("message of {size} bytes is over the limit of {max}")]
    PayloadTooLarge {
        /// The declared size.
        size: usize,
        /// The limit in force.
        max: usize,
    },
    /// `HMSG` declared more header bytes than bytes in total.
    #[error("header size {header} is over the total size {total}")]
    HeaderOverTotal {
        /// The declared header size.
        header: usize,
        /// The declared total size.
        total: usize,
    },
    /// The payload was not followed by `\r\n`: a size that lies.
    #[error("payload of {op} not followed by CRLF")]
    MissingCrlf {
        /// The operation.
        op: &'static str,
    },
    /// An `HMSG` header block does not start with `NATS/1.0` or does not end
    /// with an empty line.
    #[error("header block is not NATS/1.0 headers")]
    BadHeaderBlock,
    /// INFO or -ERR text that is not UTF-8.
    #[error("{op} text is not UTF-8")]
    InvalidUtf8 {
        /// The operation.
        op: &'static str,
    },
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Info,
    Msg,
    Hmsg,
    Ping,
    Pong,
    Ok,
    Err,
}

const OPS: [(&[u8], Op); 7] = [
    (b"INFO", Op::Info),
    (b"MSG", Op::Msg),
    (b"HMSG", Op::Hmsg),
    (b"PING", Op::Ping),
    (b"PONG", Op::Pong),
    (b"+OK", Op::Ok),
    (b"-ERR", Op::Err),
];

/// The longest operation name.
const MAX_OP_NAME: usize = 4;

fn is_space(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn is_delimiter(b: u8) -> bool {
    is_space(b) || b == b'\r' || b == b'\n'
}

/// Parses the first operation of `input`. See the module docs.
pub fn parse<'a>(input: &'a [u8], limits: &ParseLimits) -> Result<Parsed<'a>, ParseError> {
    let name_end = input.iter().take(MAX_OP_NAME + 1).position(|&b| is_delimiter(b));
    let Some(name_end) = name_end else {
        // No delimiter yet: fine while what came could still be a name.
        let head = &input[..input.len().min(MAX_OP_NAME + 1)];
        return if is_op_prefix(head) { Ok(Parsed::Partial) } else { Err(unknown(head)) };
    };
    let name = &input[..name_end];
    let op = OPS.iter().find(|(known, _)| known.eq_ignore_ascii_case(name)).map(|&(_, op)| op);
    let op = op.ok_or_else(|| unknown(name))?;

    let max_line = if op == Op::Info { limits.max_info_line } else { limits.max_control_line };
    // The line may end "\r\n" just after the limit.
    let window = &input[..input.len().min(max_line + 2)];
    let Some(newline) = window.iter().position(|&b| b == b'\n') else {
        return if window.len() == max_line + 2 {
            Err(ParseError::ControlLineTooLong { max: max_line })
        } else {
            Ok(Parsed::Partial)
        };
    };
    let line = input[..newline].strip_suffix(b"\r").unwrap_or(&input[..newline]);
    if line.len() > max_line {
        return Err(ParseError::ControlLineTooLong { max: max_line });
    }
    let line_len = newline + 1;
    let rest = trim(&line[name_end..]);

    let op = match op {
        Op::Ping => ServerOp::Ping,
        Op::Pong => ServerOp::Pong,
        Op::Ok => ServerOp::Ok,
        Op::Info => ServerOp::Info(std::str::from_utf8(rest).map_err(|_| ParseError::InvalidUtf8 { op: "INFO" })?),
        Op::Err => {
            let text = rest.strip_prefix(b"'").and_then(|t| t.strip_suffix(b"'")).unwrap_or(rest);
            ServerOp::Err(std::str::from_utf8(text).map_err(|_| ParseError::InvalidUtf8 { op: "-ERR" })?)
        }
        Op::Msg | Op::Hmsg => return parse_msg(op, rest, input, line_len, limits),
    };
    Ok(Parsed::Complete { op, consumed: line_len })
}

/// Parses the arguments and payload of `MSG subject sid [reply] size` or
/// `HMSG subject sid [reply] header_size total_size`.
fn parse_msg<'a>(
    op: Op,
    args: &'a [u8],
    input: &'a [u8],
    line_len: usize,
    limits: &ParseLimits,
) -> Result<Parsed<'a>, ParseError> {
    let name = if op == Op::Hmsg { "HMSG" } else { "MSG" };
    let bad = || ParseError::BadArguments { op: name };
    let mut fields = [&[][..]; 5];
    let mut count = 0;
    for field in args.split(|&b| is_space(b)).filter(|f| !f.is_empty()) {
        *fields.get_mut(count).ok_or_else(bad)? = field;
        count += 1;
    }
    let sizes = if op == Op::Hmsg { 2 } else { 1 };
    let reply = match count - sizes.min(count) {
        2 => None,
        3 => Some(fields[2]),
        _ => return Err(bad()),
    };
    let total = parse_size(fields[count - 1]).ok_or_else(bad)?;
    let header = if op == Op::Hmsg { parse_size(fields[count - 2]).ok_or_else(bad)? } else { 0 };
    if total > limits.max_payload {
        return Err(ParseError::PayloadTooLarge { size: total, max: limits.max_payload });
    }
    if header > total {
        return Err(ParseError::HeaderOverTotal { header, total });
    }
    let end = line_len + total;
    if input.len() < end + 2 {
        return Ok(Parsed::Partial);
    }
    if &input[end..end + 2] != b"\r\n" {
        return Err(ParseError::MissingCrlf { op: name });
    }
    let body = &input[line_len..end];
    let (headers, payload) = body.split_at(header);
    let headers = if op == Op::Hmsg {
        if !headers.starts_with(HEADER_VERSION) || !headers.ends_with(b"\r\n\r\n") {
            return Err(ParseError::BadHeaderBlock);
        }
        Some(headers)
    } else {
        None
    };
    let msg = Msg { subject: fields[0], sid: fields[1], reply, headers, payload };
    Ok(Parsed::Complete { op: ServerOp::Msg(msg), consumed: end + 2 })
}

/// A decimal size: digits only, no sign, no overflow.
fn parse_size(text: &[u8]) -> Option<usize> {
    if text.is_empty() || text.len() > 19 {
        return None;
    }
    text.iter().try_fold(0usize, |n, &b| {
        let digit = (b as char).to_digit(10)?;
        n.checked_mul(10)?.checked_add(digit as usize)
    })
}

fn trim(mut bytes: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = bytes {
        if !is_space(*first) {
            break;
        }
        bytes = rest;
    }
    while let [rest @ .., last] = bytes {
        if !is_space(*last) {
            break;
        }
        bytes = rest;
    }
    bytes
}

/// Whether `head` is the start of an operation name.
fn is_op_prefix(head: &[u8]) -> bool {
    OPS.iter().any(|(name, _)| name.len() >= head.len() && name[..head.len()].eq_ignore_ascii_case(head))
}

/// The error for an unknown name, naming it up to the first byte that made
/// it unknown: the same text however the bytes arrived.
fn unknown(name: &[u8]) -> ParseError {
    let len = (1..=name.len()).find(|&len| !is_op_prefix(&name[..len])).unwrap_or(name.len());
    ParseError::UnknownOp(String::from_utf8_lossy(&name[..len]).into_owned())
}

/// Why a subject cannot be sent.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SubjectError {
    /// Empty, or with an empty token (`a..b`, a leading or trailing `.`).
    #[error("subject {0:?} has an empty token")]
    EmptyToken(String),
    /// Contains whitespace or a control character: it would split the line.
    #[error("subject {0:?} contains whitespace or a control character")]
    Whitespace(String),
    /// A wildcard where none is allowed (publish), or `>` not last.
    #[error("subject {0:?} has a wildcard where none is allowed")]
    Wildcard(String),
}

/// Checks a subject before it is written into a control line: no empty
/// tokens, no whitespace or control characters; wildcards (`*` and `>` as
/// whole tokens, `>` last) only if `wildcards`.
pub fn check_subject(subject: &str, wildcards: bool) -> Result<(), SubjectError> {
    if subject.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(SubjectError::Whitespace(subject.to_owned()));
    }
    let mut tokens = subject.split('.').peekable();
    while let Some(token) = tokens.next() {
        match token {
            "" => return Err(SubjectError::EmptyToken(subject.to_owned())),
            "*" if wildcards => {}
            ">" if wildcards && tokens.peek().is_none() => {}
            "*" | ">" => return Err(SubjectError::Wildcard(subject.to_owned())),
            _ => {}
        }
    }
    Ok(())
}

/// One operation a client sends. Subjects are written as given: check them
/// with [`check_subject`] first.
#[derive(Clone, Copy, Debug)]
pub enum ClientOp<'a> {
    /// `CONNECT {json}`, the JSON from [`super::ConnectOptions::to_json`].
    Connect(&'a str),
    /// `PUB`, or `HPUB` when there are headers.
    Pub {
        /// The subject (literal).
        subject: &'a str,
        /// The reply subject, if any.
        reply: Option<&'a str>,
        /// Headers: `Some` makes it an `HPUB`.
        headers: Option<&'a Headers>,
        /// The payload.
        payload: &'a [u8],
    },
    /// `SUB subject [queue] sid`.
    Sub {
        /// The subject, wildcards allowed.
        subject: &'a str,
        /// A queue group, if any.
        queue: Option<&'a str>,
        /// Our subscription id.
        sid: u64,
    },
    /// `UNSUB sid [max_msgs]`.
    Unsub {
        /// The subscription id.
        sid: u64,
        /// Unsubscribe after this many more messages instead of now.
        max_msgs: Option<u64>,
    },
    /// `PING`.
    Ping,
    /// `PONG`.
    Pong,
}

impl ClientOp<'_> {
    /// Appends the operation's wire form to `out`. Written straight into
    /// `out`, numbers without `fmt`: a bridge encodes one PUB per message.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match *self {
            ClientOp::Connect(json) => {
                out.extend_from_slice(b"CONNECT ");
                out.extend_from_slice(json.as_bytes());
            }
            ClientOp::Pub { subject, reply, headers, payload } => {
                out.extend_from_slice(if headers.is_some() { b"HPUB " } else { b"PUB " });
                out.extend_from_slice(subject.as_bytes());
                if let Some(reply) = reply {
                    out.push(b' ');
                    out.extend_from_slice(reply.as_bytes());
                }
                if let Some(headers) = headers {
                    let header_len = headers.encoded_len();
                    out.push(b' ');
                    push_decimal(out, header_len as u64);
                    out.push(b' ');
                    push_decimal(out, (header_len + payload.len()) as u64);
                    out.extend_from_slice(b"\r\n");
                    headers.encode(out);
                } else {
                    out.push(b' ');
                    push_decimal(out, payload.len() as u64);
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(payload);
            }
            ClientOp::Sub { subject, queue, sid } => {
                out.extend_from_slice(b"SUB ");
                out.extend_from_slice(subject.as_bytes());
                if let Some(queue) = queue {
                    out.push(b' ');
                    out.extend_from_slice(queue.as_bytes());
                }
                out.push(b' ');
                push_decimal(out, sid);
            }
            ClientOp::Unsub { sid, max_msgs } => {
                out.extend_from_slice(b"UNSUB ");
                push_decimal(out, sid);
                if let Some(max) = max_msgs {
                    out.push(b' ');
                    push_decimal(out, max);
                }
            }
            ClientOp::Ping => out.extend_from_slice(b"PING"),
            ClientOp::Pong => out.extend_from_slice(b"PONG"),
        }
        out.extend_from_slice(b"\r\n");
    }

    /// The length of the control line [`ClientOp::encode`] writes, without
    /// its `\r\n` (the server refuses lines over its `max_control_line`).
    pub fn control_line_len(&self) -> usize {
        match *self {
            ClientOp::Connect(json) => "CONNECT ".len() + json.len(),
            ClientOp::Pub { subject, reply, headers, payload } => {
                let reply = reply.map_or(0, |r| 1 + r.len());
                let sizes = match headers {
                    Some(h) => 1 + digits(h.encoded_len()) + 1 + digits(h.encoded_len() + payload.len()),
                    None => 1 + digits(payload.len()),
                };
                let name = if headers.is_some() { 5 } else { 4 };
                name + subject.len() + reply + sizes
            }
            ClientOp::Sub { subject, queue, sid } => {
                4 + subject.len() + queue.map_or(0, |q| 1 + q.len()) + 1 + digits(sid as usize)
            }
            ClientOp::Unsub { sid, max_msgs } => {
                6 + digits(sid as usize) + max_msgs.map_or(0, |m| 1 + digits(m as usize))
            }
            ClientOp::Ping | ClientOp::Pong => 4,
        }
    }

    /// The bytes after the control line: headers, payload and `\r\n`.
    pub fn body_len(&self) -> usize {
        match *self {
            ClientOp::Pub { headers, payload, .. } => headers.map_or(0, Headers::encoded_len) + payload.len() + 2,
            _ => 0,
        }
    }
}

/// Appends `n` in decimal.
fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

fn digits(mut n: usize) -> usize {
    let mut count = 1;
    while n >= 10 {
        n /= 10;
        count += 1;
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ParseLimits {
        ParseLimits::default()
    }

    fn complete(input: &[u8]) -> (ServerOp<'_>, usize) {
        match parse(input, &limits()) {
            Ok(Parsed::Complete { op, consumed }) => (op, consumed),
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(input)),
        }
    }

    fn msg<'a>(subject: &'a str, sid: &'a str, reply: Option<&'a str>, payload: &'a [u8]) -> ServerOp<'a> {
        ServerOp::Msg(Msg {
            subject: subject.as_bytes(),
            sid: sid.as_bytes(),
            reply: reply.map(str::as_bytes),
            headers: None,
            payload,
        })
    }

    /// Server operations as the protocol docs and `server/client.go` write
    /// them, with what they parse to.
    #[test]
    fn protocol_vectors() {
        let info = b"INFO {\"server_id\":\"NCX\",\"version\":\"2.10.0\",\"max_payload\":1048576,\"headers\":true,\"connect_urls\":[\"10.0.0.2:4222\"]}\r\n";
        let vectors: &[(&[u8], ServerOp<'_>)] = &[
            (info, ServerOp::Info(std::str::from_utf8(&info[5..info.len() - 2]).unwrap())),
            (b"MSG FOO.BAR 9 11\r\nHello World\r\n", msg("FOO.BAR", "9", None, b"Hello World")),
            (
                b"MSG FOO.BAR 9 GREETING.34 11\r\nHello World\r\n",
                msg("FOO.BAR", "9", Some("GREETING.34"), b"Hello World"),
            ),
            (b"MSG empty 1 0\r\n\r\n", msg("empty", "1", None, b"")),
            (b"msg\tlower \t 2  3\r\nabc\r\n", msg("lower", "2", None, b"abc")),
            (b"MSG bare 1 2\nhi\r\n", msg("bare", "1", None, b"hi")),
            (b"PING\r\n", ServerOp::Ping),
            (b"ping\r\n", ServerOp::Ping),
            (b"PONG\r\n", ServerOp::Pong),
            (b"+OK\r\n", ServerOp::Ok),
            (b"-ERR 'Authorization Violation'\r\n", ServerOp::Err("Authorization Violation")),
            (b"-ERR 'Unknown Protocol Operation'\r\n", ServerOp::Err("Unknown Protocol Operation")),
            (b"-err unquoted\r\n", ServerOp::Err("unquoted")),
        ];
        for (input, expected) in vectors {
            let (op, consumed) = complete(input);
            assert_eq!(op, *expected, "{:?}", String::from_utf8_lossy(input));
            assert_eq!(consumed, input.len());
        }
    }

    #[test]
    fn hmsg_splits_headers_from_payload() {
        // From the protocol docs: header block of 34 bytes, 45 in all.
        let input = b"HMSG FOO.BAR 9 BAZ.69 34 45\r\nNATS/1.0\r\nFoodGroup: vegetable\r\n\r\nHello World\r\n";
        let (op, consumed) = complete(input);
        assert_eq!(consumed, input.len());
        let ServerOp::Msg(m) = op else { panic!("{op:?}") };
        assert_eq!(m.subject, b"FOO.BAR");
        assert_eq!(m.reply, Some(&b"BAZ.69"[..]));
        assert_eq!(m.headers, Some(&b"NATS/1.0\r\nFoodGroup: vegetable\r\n\r\n"[..]));
        assert_eq!(m.payload, b"Hello World");

        // A status-only block, as the server sends for no responders.
        let input = b"HMSG _INBOX.x 3 16 16\r\nNATS/1.0 503\r\n\r\n\r\n";
        let ServerOp::Msg(m) = complete(input).0 else { panic!() };
        assert_eq!(m.payload, b"");
        assert_eq!(m.headers, Some(&b"NATS/1.0 503\r\n\r\n"[..]));
    }

    #[test]
    fn every_prefix_is_partial_and_then_complete() {
        let stream: &[u8] =
            b"INFO {\"a\":1}\r\nMSG a.b 1 r 3\r\nxyz\r\nHMSG h 2 12 14\r\nNATS/1.0\r\n\r\nhi\r\nPING\r\n-ERR 'x'\r\n";
        let mut at = 0;
        let mut ops = 0;
        while at < stream.len() {
            let rest = &stream[at..];
            let (_, consumed) = complete(rest);
            for cut in 0..consumed {
                assert_eq!(parse(&rest[..cut], &limits()), Ok(Parsed::Partial), "cut {cut} of {rest:?}");
            }
            at += consumed;
            ops += 1;
        }
        assert_eq!(ops, 5);
    }

    #[test]
    fn sizes_are_checked_before_the_payload_arrives() {
        let small = ParseLimits { max_payload: 10, ..limits() };
        assert_eq!(parse(b"MSG a 1 11\r\n", &small), Err(ParseError::PayloadTooLarge { size: 11, max: 10 }));
        assert_eq!(
            parse(b"HMSG a 1 0 99999999999999\r\n", &small),
            Err(ParseError::PayloadTooLarge { size: 99999999999999, max: 10 })
        );
        assert_eq!(parse(b"HMSG a 1 5 4\r\n", &small), Err(ParseError::HeaderOverTotal { header: 5, total: 4 }));
        assert_eq!(parse(b"MSG a 1 100000000000000000000\r\n", &small), Err(ParseError::BadArguments { op: "MSG" }));
        assert_eq!(parse(b"MSG a 1 -1\r\n", &small), Err(ParseError::BadArguments { op: "MSG" }));
    }

    #[test]
    fn long_lines_are_refused_without_their_end() {
        let tight = ParseLimits { max_control_line: 16, max_info_line: 32, ..limits() };
        let mut line = b"MSG ".to_vec();
        line.extend(std::iter::repeat_n(b'a', 13));
        // 17 bytes: the line could still end "\r\n" at 16 + 2.
        assert_eq!(parse(&line, &tight), Ok(Parsed::Partial));
        line.push(b'a');
        assert_eq!(parse(&line, &tight), Err(ParseError::ControlLineTooLong { max: 16 }));
        // INFO has its own, larger limit.
        let info = format!("INFO {}\r\n", "x".repeat(27));
        assert!(matches!(parse(info.as_bytes(), &tight), Ok(Parsed::Complete { .. })));
        let info = format!("INFO {}\r\n", "x".repeat(28));
        assert_eq!(parse(info.as_bytes(), &tight), Err(ParseError::ControlLineTooLong { max: 32 }));
    }

    #[test]
    fn malformed_operations_are_errors() {
        let cases: &[(&[u8], ParseError)] = &[
            (b"HELLO\r\n", ParseError::UnknownOp("HE".into())),
            (b"PUB a 1\r\n", ParseError::UnknownOp("PU".into())),
            (b"PI \r\n", ParseError::UnknownOp("PI".into())),
            (b"X", ParseError::UnknownOp("X".into())),
            (b"MSGX", ParseError::UnknownOp("MSGX".into())),
            (b"MSG a\r\n", ParseError::BadArguments { op: "MSG" }),
            (b"MSG a 1 2 3 4\r\n", ParseError::BadArguments { op: "MSG" }),
            (b"MSG a 1 x\r\n", ParseError::BadArguments { op: "MSG" }),
            (b"HMSG a 1 2\r\n", ParseError::BadArguments { op: "HMSG" }),
            (b"MSG a 1 2\r\nabcd", ParseError::MissingCrlf { op: "MSG" }),
            (b"HMSG a 1 3 3\r\nabc\r\n", ParseError::BadHeaderBlock),
            (b"HMSG a 1 10 10\r\nNATS/1.0\r\n\r\n", ParseError::BadHeaderBlock),
            (b"INFO \xff\r\n", ParseError::InvalidUtf8 { op: "INFO" }),
        ];
        for (input, expected) in cases {
            assert_eq!(parse(input, &limits()).as_ref(), Err(expected), "{:?}", String::from_utf8_lossy(input));
        }
        // Names that are still prefixes wait for more.
        for prefix in [&b"H"[..], b"hm", b"HMS", b"+", b"-e", b"PIN", b"in"] {
            assert_eq!(parse(prefix, &limits()), Ok(Parsed::Partial), "{prefix:?}");
        }
    }

    /// Client operations as the protocol docs write them.
    #[test]
    fn encoder_vectors() {
        let mut headers = Headers::new();
        headers.append("Bar", "Baz").unwrap();
        let cases: &[(ClientOp<'_>, &[u8])] = &[
            (ClientOp::Connect("{\"verbose\":false}"), b"CONNECT {\"verbose\":false}\r\n"),
            (
                ClientOp::Pub { subject: "FOO", reply: None, headers: None, payload: b"Hello NATS!" },
                b"PUB FOO 11\r\nHello NATS!\r\n",
            ),
            (
                ClientOp::Pub { subject: "FRONT.DOOR", reply: Some("JOKE.22"), headers: None, payload: b"Knock Knock" },
                b"PUB FRONT.DOOR JOKE.22 11\r\nKnock Knock\r\n",
            ),
            (ClientOp::Pub { subject: "NOTIFY", reply: None, headers: None, payload: b"" }, b"PUB NOTIFY 0\r\n\r\n"),
            (
                ClientOp::Pub { subject: "FOO", reply: None, headers: Some(&headers), payload: b"Hello NATS!" },
                b"HPUB FOO 22 33\r\nNATS/1.0\r\nBar: Baz\r\n\r\nHello NATS!\r\n",
            ),
            (ClientOp::Sub { subject: "FOO", queue: None, sid: 1 }, b"SUB FOO 1\r\n"),
            (ClientOp::Sub { subject: "BAR", queue: Some("G1"), sid: 44 }, b"SUB BAR G1 44\r\n"),
            (ClientOp::Unsub { sid: 1, max_msgs: None }, b"UNSUB 1\r\n"),
            (ClientOp::Unsub { sid: 1, max_msgs: Some(5) }, b"UNSUB 1 5\r\n"),
            (ClientOp::Unsub { sid: 1_000_000_007, max_msgs: Some(10) }, b"UNSUB 1000000007 10\r\n"),
            (ClientOp::Unsub { sid: u64::MAX, max_msgs: Some(0) }, b"UNSUB 18446744073709551615 0\r\n"),
            (ClientOp::Ping, b"PING\r\n"),
            (ClientOp::Pong, b"PONG\r\n"),
        ];
        for (op, expected) in cases {
            let mut out = Vec::new();
            op.encode(&mut out);
            assert_eq!(String::from_utf8_lossy(&out), String::from_utf8_lossy(expected));
            let line = out.iter().position(|&b| b == b'\r').unwrap();
            assert_eq!(op.control_line_len(), line, "{op:?}");
            assert_eq!(line + 2 + op.body_len(), out.len(), "{op:?}");
        }
    }

    #[test]
    fn subjects_are_checked() {
        assert_eq!(check_subject("a.b", false), Ok(()));
        assert_eq!(check_subject("a.*.>", true), Ok(()));
        assert_eq!(check_subject("a*b.c>", false), Ok(()));
        assert!(matches!(check_subject("a.*", false), Err(SubjectError::Wildcard(_))));
        assert!(matches!(check_subject("a.>.b", true), Err(SubjectError::Wildcard(_))));
        for bad in ["", "a..b", ".a", "a."] {
            assert!(matches!(check_subject(bad, true), Err(SubjectError::EmptyToken(_))), "{bad:?}");
        }
        for bad in ["a b", "a\tb", "a\r\nPUB"] {
            assert!(matches!(check_subject(bad, true), Err(SubjectError::Whitespace(_))), "{bad:?}");
        }
    }
}
