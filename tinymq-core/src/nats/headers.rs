//! NATS message headers (`HPUB`/`HMSG`), and the two that the tinymq
//! bridge sets.
//!
//! A header block is `NATS/1.0[ status[ description]]\r\n`, then
//! `Name: value\r\n` lines, then an empty line: HTTP/1 headers under another
//! version line. Names may repeat; order is kept.
//!
//! The bridge marks what it publishes into NATS with [`ORIGIN_HEADER`], the
//! id of the broker the message entered at, so that a broker that receives
//! its own message back (from another subscription, or through another
//! bridge on the same subtree) drops it; and with [`RETAIN_HEADER`] when the
//! publish was retained, so that the far broker stores it too.

/// The header naming the broker a bridged message entered at.
pub const ORIGIN_HEADER: &str = "Tinymq-Origin";

/// The header marking a retained publish; its value is [`RETAIN_VALUE`].
pub const RETAIN_HEADER: &str = "Tinymq-Retain";

/// The value [`RETAIN_HEADER`] carries.
pub const RETAIN_VALUE: &str = "1";

/// Why a header cannot be built or a received block read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderError {
    /// A name that is empty or holds a byte outside visible ASCII, or `:`.
    #[error("invalid header name {0:?}")]
    InvalidName(String),
    /// A value holding CR, LF or another control character except tab.
    #[error("invalid value for header {0:?}")]
    InvalidValue(String),
    /// A received block that is not `NATS/1.0` lines ending in an empty line.
    #[error("malformed header block")]
    Malformed,
}

/// The headers of one message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers {
    /// The status code on the version line (`503` for no responders).
    status: Option<u16>,
    /// The text after the status code.
    description: String,
    entries: Vec<(String, String)>,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b':')
}

fn valid_value(value: &str) -> bool {
    value.bytes().all(|b| b == b'\t' || !(b.is_ascii_control()))
}

impl Headers {
    /// No headers.
    pub fn new() -> Self {
        Headers::default()
    }

    /// The headers the bridge puts on a message it publishes into NATS:
    /// the origin broker's id and, for a retained publish, the retain mark.
    pub fn for_bridge(origin: &str, retain: bool) -> Result<Self, HeaderError> {
        let mut headers = Headers::new();
        headers.append(ORIGIN_HEADER, origin)?;
        if retain {
            headers.append(RETAIN_HEADER, RETAIN_VALUE)?;
        }
        Ok(headers)
    }

    /// Adds `name: value` after the others (names may repeat).
    pub fn append(&mut self, name: &str, value: &str) -> Result<&mut Self, HeaderError> {
        if !valid_name(name) {
            return Err(HeaderError::InvalidName(name.to_owned()));
        }
        // Leading and trailing blanks would not survive a round trip.
        if !valid_value(value) || value.trim_matches([' ', '\t']) != value {
            return Err(HeaderError::InvalidValue(name.to_owned()));
        }
        self.entries.push((name.to_owned(), value.to_owned()));
        Ok(self)
    }

    /// The first value of `name`, compared without regard to ASCII case as
    /// HTTP does (clients differ in how they write names).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Every `(name, value)` in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// How many entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The status code of the version line, if any.
    pub fn status(&self) -> Option<u16> {
        self.status
    }

    /// The description after the status code (may be empty).
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The broker id in [`ORIGIN_HEADER`], if the message came through a
    /// tinymq bridge.
    pub fn origin(&self) -> Option<&str> {
        self.get(ORIGIN_HEADER)
    }

    /// Whether [`RETAIN_HEADER`] marks a retained publish.
    pub fn is_retained(&self) -> bool {
        self.get(RETAIN_HEADER) == Some(RETAIN_VALUE)
    }

    /// The number of bytes [`Headers::encode`] appends.
    pub fn encoded_len(&self) -> usize {
        let entries: usize = self.entries.iter().map(|(n, v)| n.len() + 2 + v.len() + 2).sum();
        "NATS/1.0\r\n".len() + entries + 2
    }

    /// Appends the block to `out`. The status line is not written: a client
    /// never sends one.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.reserve(self.encoded_len());
        out.extend_from_slice(b"NATS/1.0\r\n");
        for (name, value) in &self.entries {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
    }

    /// Reads a received block (from [`super::Msg::headers`]).
    pub fn parse(block: &[u8]) -> Result<Self, HeaderError> {
        let text = std::str::from_utf8(block).map_err(|_| HeaderError::Malformed)?;
        let body = text.strip_suffix("\r\n\r\n").ok_or(HeaderError::Malformed)?;
        let mut lines = body.split("\r\n");
        let version = lines.next().and_then(|l| l.strip_prefix("NATS/1.0")).ok_or(HeaderError::Malformed)?;
        let mut headers = Headers::new();
        let version = version.trim_start_matches([' ', '\t']);
        if !version.is_empty() {
            let (code, description) = version.split_once([' ', '\t']).unwrap_or((version, ""));
            let code = code.parse().ok().filter(|_| code.len() == 3).ok_or(HeaderError::Malformed)?;
            headers.status = Some(code);
            headers.description = description.trim().to_owned();
        }
        for line in lines {
            let (name, value) = line.split_once(':').ok_or(HeaderError::Malformed)?;
            let value = value.trim_matches([' ', '\t']);
            if !valid_name(name) || !valid_value(value) {
                return Err(HeaderError::Malformed);
            }
            headers.entries.push((name.to_owned(), value.to_owned()));
        }
        Ok(headers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bridge_headers_round_trip() {
        for retain in [false, true] {
            let headers = Headers::for_bridge("broker-a", retain).unwrap();
            let mut block = Vec::new();
            headers.encode(&mut block);
            assert_eq!(block.len(), headers.encoded_len());
            let back = Headers::parse(&block).unwrap();
            assert_eq!(back, headers);
            assert_eq!(back.origin(), Some("broker-a"));
            assert_eq!(back.is_retained(), retain);
        }
        let block = Headers::for_bridge("b1", true).map(|h| {
            let mut out = Vec::new();
            h.encode(&mut out);
            out
        });
        assert_eq!(block.unwrap(), b"NATS/1.0\r\nTinymq-Origin: b1\r\nTinymq-Retain: 1\r\n\r\n");
    }

    #[test]
    fn received_blocks() {
        let h = Headers::parse(b"NATS/1.0\r\nFoodGroup: vegetable\r\nA:b\r\nA:  c  \r\n\r\n").unwrap();
        assert_eq!(h.get("foodgroup"), Some("vegetable"));
        assert_eq!(h.iter().collect::<Vec<_>>(), [("FoodGroup", "vegetable"), ("A", "b"), ("A", "c")]);
        assert_eq!(h.status(), None);
        let h = Headers::parse(b"NATS/1.0 503\r\n\r\n").unwrap();
        assert_eq!((h.status(), h.description(), h.len()), (Some(503), "", 0));
        let h = Headers::parse(b"NATS/1.0 404 No Messages\r\n\r\n").unwrap();
        assert_eq!((h.status(), h.description()), (Some(404), "No Messages"));
        for bad in [&b"NATS/1.0\r\n"[..], b"HTTP/1.1\r\n\r\n", b"NATS/1.0 5x3\r\n\r\n", b"NATS/1.0\r\nnocolon\r\n\r\n"]
        {
            assert_eq!(Headers::parse(bad), Err(HeaderError::Malformed), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn invalid_names_and_values_are_refused() {
        let mut h = Headers::new();
        for name in ["", "a b", "a:b", "a\r\nb", "é"] {
            assert!(matches!(h.append(name, "v"), Err(HeaderError::InvalidName(_))), "{name:?}");
        }
        for value in ["a\r\nb", "a\nb", " lead", "trail "] {
            assert!(matches!(h.append("n", value), Err(HeaderError::InvalidValue(_))), "{value:?}");
        }
        assert!(h.is_empty());
    }
}
