//! The part of the NATS text protocol the bench speaks: CONNECT, SUB,
//! PUB, PING and PONG out; INFO, MSG, PING, PONG, +OK and -ERR in. No
//! headers, no acknowledgements (`verbose: false`).

use super::event::Event;

/// The longest control line accepted (INFO lists the cluster's URLs).
const MAX_LINE: usize = 64 * 1024;

/// The subject for a tinymq topic: levels are separated by dots.
pub fn subject(topic: &str) -> String {
    topic.replace('/', ".")
}

/// CONNECT, then a PING whose PONG says the server took it.
pub fn encode_connect(name: &str, out: &mut Vec<u8>) {
    // Client names are ours (bench-sub-0): nothing to escape in JSON.
    out.extend_from_slice(b"CONNECT {\"verbose\":false,\"pedantic\":false,\"name\":\"");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\"}\r\n");
    encode_ping(out);
}

/// SUB with a subscription id, then a PING: its PONG confirms the SUB.
pub fn encode_subscribe(subject: &str, sid: u64, out: &mut Vec<u8>) {
    out.extend_from_slice(b"SUB ");
    out.extend_from_slice(subject.as_bytes());
    out.push(b' ');
    push_decimal(sid, out);
    out.extend_from_slice(b"\r\n");
    encode_ping(out);
}

/// PUB without a reply subject.
pub fn encode_publish(subject: &str, payload: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b"PUB ");
    out.extend_from_slice(subject.as_bytes());
    out.push(b' ');
    push_decimal(payload.len() as u64, out);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\r\n");
}

/// PING.
pub fn encode_ping(out: &mut Vec<u8>) {
    out.extend_from_slice(b"PING\r\n");
}

/// PONG, the answer to the server's PING.
pub fn encode_pong(out: &mut Vec<u8>) {
    out.extend_from_slice(b"PONG\r\n");
}

fn push_decimal(mut n: u64, out: &mut Vec<u8>) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Parses one server operation at the start of `input`: `Ok(None)` when
/// it is incomplete, else the event and the bytes it took.
pub fn parse(input: &[u8]) -> Result<Option<(Event<'_>, usize)>, String> {
    let Some(eol) = input.windows(2).position(|w| w == b"\r\n") else {
        if input.len() > MAX_LINE {
            return Err(format!("a NATS control line over {MAX_LINE} bytes"));
        }
        return Ok(None);
    };
    let line = &input[..eol];
    let after_line = eol + 2;
    let op_end = line.iter().position(|&b| b == b' ' || b == b'\t').unwrap_or(line.len());
    let op = &line[..op_end];
    let event = if op.eq_ignore_ascii_case(b"MSG") {
        // MSG <subject> <sid> [reply-to] <#bytes>
        let len = line[op_end..]
            .split(|&b| b == b' ' || b == b'\t')
            .rfind(|field| !field.is_empty())
            .and_then(|field| std::str::from_utf8(field).ok()?.parse::<usize>().ok())
            .ok_or_else(|| format!("a bad NATS MSG line: {:?}", String::from_utf8_lossy(line)))?;
        let end = after_line + len;
        if input.len() < end + 2 {
            return Ok(None);
        }
        if &input[end..end + 2] != b"\r\n" {
            return Err("a NATS MSG payload not followed by CRLF".into());
        }
        return Ok(Some((Event::Message(&input[after_line..end]), end + 2)));
    } else if op.eq_ignore_ascii_case(b"PING") {
        Event::Ping
    } else if op.eq_ignore_ascii_case(b"PONG") {
        Event::Pong
    } else if op.eq_ignore_ascii_case(b"INFO") || op.eq_ignore_ascii_case(b"+OK") {
        Event::Other
    } else if op.eq_ignore_ascii_case(b"-ERR") {
        return Err(format!("the server said {}", String::from_utf8_lossy(line)));
    } else {
        return Err(format!("an unknown NATS operation: {:?}", String::from_utf8_lossy(line)));
    };
    Ok(Some((event, after_line)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every event in `input`, parsed whole and split at every byte.
    fn parse_all(input: &[u8]) -> Vec<String> {
        let whole = parse_from(input, &[]);
        for split in 0..=input.len() {
            assert_eq!(parse_from(&input[..split], &input[split..]), whole, "split at {split}");
        }
        whole
    }

    /// Feeds `first`, then `rest`, as a reader does: parse what is whole,
    /// keep the remainder.
    fn parse_from(first: &[u8], rest: &[u8]) -> Vec<String> {
        let mut buf = first.to_vec();
        let mut events = Vec::new();
        let mut drain = |buf: &mut Vec<u8>| {
            while let Some((event, used)) = parse(buf).unwrap() {
                events.push(format!("{event:?}"));
                buf.drain(..used);
            }
        };
        drain(&mut buf);
        buf.extend_from_slice(rest);
        drain(&mut buf);
        assert!(buf.is_empty(), "left over: {buf:?}");
        events
    }

    #[test]
    fn parses_server_operations_split_anywhere() {
        let input = b"INFO {\"server_id\":\"x\",\"max_payload\":1048576}\r\n+OK\r\nPING\r\n\
            MSG bench.a 1 5\r\nhello\r\nMSG bench.a 12 _INBOX.r1 3\r\na\r\n\r\nMSG x 2 0\r\n\r\nPONG\r\n";
        assert_eq!(
            parse_all(input),
            [
                "Other",
                "Other",
                "Ping",
                "Message([104, 101, 108, 108, 111])",
                "Message([97, 13, 10])",
                "Message([])",
                "Pong"
            ]
        );
    }

    #[test]
    fn lower_case_and_tabs_are_accepted() {
        assert_eq!(parse_all(b"msg\tsub\t1\t2\r\nab\r\nping\r\n"), ["Message([97, 98])", "Ping"]);
    }

    #[test]
    fn errors_are_errors() {
        assert!(parse(b"-ERR 'Authorization Violation'\r\n").unwrap_err().contains("Authorization Violation"));
        assert!(parse(b"MSG a 1 x\r\n").is_err());
        assert!(parse(b"MSG a 1 2\r\nabXY").is_err());
        assert!(parse(b"BOGUS\r\n").is_err());
        assert!(parse(&vec![b'I'; MAX_LINE + 1]).is_err());
    }

    #[test]
    fn incomplete_is_not_an_error() {
        assert!(parse(b"").unwrap().is_none());
        assert!(parse(b"PIN").unwrap().is_none());
        assert!(parse(b"MSG a 1 10\r\n01234").unwrap().is_none());
        assert!(parse(b"MSG a 1 2\r\nab\r").unwrap().is_none());
    }

    #[test]
    fn encodes_client_operations() {
        let mut out = Vec::new();
        encode_connect("bench-pub-0", &mut out);
        encode_subscribe(&subject("bench/a/idle/7"), 7, &mut out);
        encode_publish("bench.a", b"hi", &mut out);
        encode_publish("bench.a", &[0; 1000], &mut out);
        encode_pong(&mut out);
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with(
            "CONNECT {\"verbose\":false,\"pedantic\":false,\"name\":\"bench-pub-0\"}\r\nPING\r\n\
             SUB bench.a.idle.7 7\r\nPING\r\nPUB bench.a 2\r\nhi\r\nPUB bench.a 1000\r\n\0"
        ));
        assert!(text.ends_with("\0\r\nPONG\r\n"));
        let mut zero = Vec::new();
        push_decimal(0, &mut zero);
        push_decimal(u64::MAX, &mut zero);
        assert_eq!(zero, b"018446744073709551615");
    }
}
