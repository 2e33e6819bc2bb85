//! The Moustique parameter encoding and `application/x-www-form-urlencoded`
//! decoding.
//!
//! Moustique encodes every parameter value, and every JSON answer, in two
//! steps. Two generations of it are in use, and the steps do not commute:
//!
//! - [`Encoding::Current`]: ROT13 of the text, then standard Base64. The
//!   Moustique server since December 2025 and all of its current clients
//!   (PyPI `moustique-client` 0.1.1, the JavaScript, Go, Java and Perl
//!   clients) use it: `printf %s "$x" | tr 'A-Za-z' 'N-ZA-Mn-za-m' | base64 -w0`.
//! - [`Encoding::Legacy`]: standard Base64, then ROT13 of the Base64 text.
//!   The JavaScript and Go clients before December 2025 and the shell
//!   recipe in Moustique's README use it: `printf %s "$x" | base64 -w0 | tr
//!   'A-Za-z' 'N-ZA-Mn-za-m'`.
//!
//! [`decode_params`] finds the order of a whole request (see
//! [`EncodingMode::Auto`]), and the answer is encoded in the same order. A
//! value that decodes to no text in the chosen order is taken as it is, as
//! Moustique does.
//!
//! How the two orders are told apart: each generation's encoder writes
//! canonical Base64 (the unused bits of the last character are zero). Read
//! in the other order, a padded value almost never is, since ROT13 moves
//! the letters that can end a padded value (`A Q g w`, and for one `=` a
//! multiple of four) to letters that cannot. So a value is taken as
//! decoding in an order only if it is canonical Base64 there and gives
//! UTF-8 text without control characters; unpadded values (lengths that
//! are a multiple of three) are told apart by that text test alone.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// The order of Moustique's two encoding steps. See the module docs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// ROT13, then Base64: today's Moustique server and clients.
    #[default]
    Current,
    /// Base64, then ROT13 of the Base64 text: the older generation.
    Legacy,
}

/// Which orders the broker accepts (`http.moustique_encoding`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum EncodingMode {
    /// Each request in the current order, or in the legacy order when, and
    /// only when, the current order does not give text for every one of its
    /// encoded parameters and the legacy order does. A parameter that gives
    /// text in neither order was sent raw and does not count. The default.
    #[default]
    Auto,
    /// Every request in the current order.
    Current,
    /// Every request in the legacy order.
    Legacy,
}

impl EncodingMode {
    /// The mode a config value names: `auto`, `current` or `legacy`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "auto" => Some(EncodingMode::Auto),
            "current" => Some(EncodingMode::Current),
            "legacy" => Some(EncodingMode::Legacy),
            _ => None,
        }
    }

    /// The name [`EncodingMode::parse`] reads.
    pub fn name(self) -> &'static str {
        match self {
            EncodingMode::Auto => "auto",
            EncodingMode::Current => "current",
            EncodingMode::Legacy => "legacy",
        }
    }
}

impl std::str::FromStr for EncodingMode {
    type Err = &'static str;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        EncodingMode::parse(text).ok_or("expected auto, current or legacy")
    }
}

/// Rotates ASCII letters by 13 places; every other byte stays.
fn rot13_byte(byte: u8) -> u8 {
    match byte {
        b'a'..=b'z' => (byte - b'a' + 13) % 26 + b'a',
        b'A'..=b'Z' => (byte - b'A' + 13) % 26 + b'A',
        _ => byte,
    }
}

fn rot13(bytes: &[u8]) -> Vec<u8> {
    bytes.iter().map(|&b| rot13_byte(b)).collect()
}

/// Encodes a value in `encoding`'s order.
pub fn encode_value(value: &[u8], encoding: Encoding) -> String {
    match encoding {
        Encoding::Current => STANDARD.encode(rot13(value)),
        Encoding::Legacy => STANDARD.encode(value).bytes().map(|b| char::from(rot13_byte(b))).collect(),
    }
}

/// Whether decoded bytes are what an encoder was given: UTF-8 text with
/// no control characters but tab, line feed and carriage return.
fn is_text(bytes: &[u8]) -> bool {
    std::str::from_utf8(bytes)
        .is_ok_and(|text| !text.chars().any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r')))
}

/// Decodes a value in `encoding`'s order, if it is canonical Base64 there
/// and decodes to text (see the module docs). A `+` sent unescaped in a
/// form arrives as a space; it is read as the `+` it was.
pub fn decode_as(value: &[u8], encoding: Encoding) -> Option<Vec<u8>> {
    let attempt = |value: &[u8]| -> Option<Vec<u8>> {
        let decoded = match encoding {
            Encoding::Current => rot13(&STANDARD.decode(value).ok()?),
            Encoding::Legacy => STANDARD.decode(rot13(value)).ok()?,
        };
        is_text(&decoded).then_some(decoded)
    };
    if value.is_empty() {
        return Some(Vec::new());
    }
    // `base64` wraps its output at 76 columns: Moustique's README recipe
    // sends long values with line breaks, which Base64 decoders skip.
    if value.contains(&b'\n') {
        let unwrapped: Vec<u8> = value.iter().copied().filter(|b| !matches!(b, b'\r' | b'\n')).collect();
        return decode_as(&unwrapped, encoding);
    }
    attempt(value).or_else(|| {
        value
            .contains(&b' ')
            .then(|| value.iter().map(|&b| if b == b' ' { b'+' } else { b }))
            .and_then(|v| attempt(&v.collect::<Vec<_>>()))
    })
}

/// Decodes a value in `encoding`'s order, or returns it as it is when it
/// does not decode to text in that order (a raw `/sensors/kitchen` is
/// valid Base64 but decodes to noise).
pub fn decode_value(value: &[u8], encoding: Encoding) -> Vec<u8> {
    decode_as(value, encoding).unwrap_or_else(|| value.to_vec())
}

/// Finds the order of a request's encoded values under `mode` (see
/// [`EncodingMode::Auto`]) and decodes them in place, each value that does
/// not decode in that order staying as it is. A request with no values is
/// in the current order.
pub fn decode_params(values: &mut [(String, Vec<u8>)], mode: EncodingMode) -> Encoding {
    let (encoding, decoded): (Encoding, Vec<Option<Vec<u8>>>) = match mode {
        EncodingMode::Current => {
            (Encoding::Current, values.iter().map(|(_, v)| decode_as(v, Encoding::Current)).collect())
        }
        EncodingMode::Legacy => {
            (Encoding::Legacy, values.iter().map(|(_, v)| decode_as(v, Encoding::Legacy)).collect())
        }
        EncodingMode::Auto => {
            // Each value read both ways, once; the order's reading is kept.
            let both: Vec<_> =
                values.iter().map(|(_, v)| (decode_as(v, Encoding::Current), decode_as(v, Encoding::Legacy))).collect();
            // Values that decode in neither order were sent raw: they say
            // nothing about the order of the others.
            let (mut current, mut legacy) = (true, true);
            for (c, l) in &both {
                if c.is_some() || l.is_some() {
                    current &= c.is_some();
                    legacy &= l.is_some();
                }
            }
            if !current && legacy {
                (Encoding::Legacy, both.into_iter().map(|(_, l)| l).collect())
            } else {
                (Encoding::Current, both.into_iter().map(|(c, _)| c).collect())
            }
        }
    };
    for ((_, value), decoded) in values.iter_mut().zip(decoded) {
        if let Some(decoded) = decoded {
            *value = decoded;
        }
    }
    encoding
}

/// Why a form or query string could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FormError {
    /// A `%` not followed by two hex digits.
    #[error("bad percent-encoding in {0:?}")]
    BadPercent(String),
    /// A parameter name that is not UTF-8 once decoded.
    #[error("a parameter name is not UTF-8")]
    NameNotUtf8,
}

/// Percent-decodes one form component, `+` meaning space.
fn decode_component(input: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len());
    let mut bytes = input.iter();
    while let Some(&byte) = bytes.next() {
        out.push(match byte {
            b'+' => b' ',
            b'%' => {
                let hex = [*bytes.next()?, *bytes.next()?];
                u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?
            }
            other => other,
        });
    }
    Some(out)
}

/// Decodes `name=value&name=value` (a form body or a query string) into
/// pairs, in order. Empty pieces (`a=1&&b=2`) are skipped; a piece
/// without `=` is a name with an empty value.
pub fn parse_form(input: &[u8]) -> Result<Vec<(String, Vec<u8>)>, FormError> {
    let mut pairs = Vec::new();
    for piece in input.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
        let (name, value) = match piece.iter().position(|&b| b == b'=') {
            Some(at) => (&piece[..at], &piece[at + 1..]),
            None => (piece, &[][..]),
        };
        let lossy = || String::from_utf8_lossy(name).into_owned();
        let name = decode_component(name).ok_or_else(|| FormError::BadPercent(lossy()))?;
        let name = String::from_utf8(name).map_err(|_| FormError::NameNotUtf8)?;
        let value = decode_component(value).ok_or_else(|| FormError::BadPercent(name.clone()))?;
        pairs.push((name, value));
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Computed with PyPI `moustique-client` 0.1.1's `encode_rot13_base64`
    /// (ROT13, then Base64): the current order.
    const CURRENT: &[(&str, &str)] = &[
        ("/sensors/bedroom/temperature", "L2ZyYWZiZWYvb3JxZWJiei9ncnpjcmVuZ2hlcg=="),
        ("23.1", "MjMuMQ=="),
        ("my-app", "emwtbmNj"),
        ("a", "bg=="),
        ("ab", "bm8="),
        ("abc", "bm9w"),
        ("Hej, detta är ett testmeddelande!", "VXJ3LCBxcmdnbiDDpGUgcmdnIGdyZmd6cnFxcnluYXFyIQ=="),
        (r#"{"topic": "/a", "message": "1"}"#, "eyJnYmN2cCI6ICIvbiIsICJ6cmZmbnRyIjogIjEifQ=="),
    ];

    /// Computed with `codecs.encode(base64.b64encode(s), 'rot13')`, what
    /// the older clients and Moustique's README recipe do: the legacy order.
    const LEGACY: &[(&str, &str)] = &[
        ("/sensors/bedroom/temperature", "Y3AyoaAipaZiLzIxpz9ioF90MJ1jMKWuqUIlMD=="),
        ("23.1", "ZwZhZD=="),
        ("my-app", "oKxgLKOj"),
        ("a", "LD=="),
        ("ab", "LJV="),
        ("Hej, detta är ett testmeddelande!", "FTIdYPOxMKE0LFQQcUVtMKE0VUEyp3EgMJExMJkuozEyVD=="),
        (r#"{"topic": "/a", "message": "1"}"#, "rlW0o3OcLlV6VPViLFVfVPWgMKAmLJqyVwbtVwRvsD=="),
    ];

    fn detect(values: &[&str]) -> (Encoding, Vec<String>) {
        let mut pairs: Vec<(String, Vec<u8>)> =
            values.iter().map(|v| ("p".to_owned(), v.as_bytes().to_vec())).collect();
        let encoding = decode_params(&mut pairs, EncodingMode::Auto);
        (encoding, pairs.into_iter().map(|(_, v)| String::from_utf8(v).unwrap()).collect())
    }

    #[test]
    fn values_encode_and_decode_like_both_generations_of_clients() {
        for (encoding, vectors) in [(Encoding::Current, CURRENT), (Encoding::Legacy, LEGACY)] {
            for (plain, encoded) in vectors {
                assert_eq!(encode_value(plain.as_bytes(), encoding), *encoded, "{plain}");
                assert_eq!(decode_value(encoded.as_bytes(), encoding), plain.as_bytes(), "{encoded}");
                assert_eq!(detect(&[encoded]), (encoding, vec![plain.to_string()]), "{encoded}");
            }
            assert_eq!(encode_value(b"", encoding), "");
            assert_eq!(decode_value(b"", encoding), b"");
        }
    }

    #[test]
    fn values_that_are_not_base64_are_taken_as_they_are() {
        for raw in ["/sensors/kitchen", "23.5 degrees", "a=b", "%%%", "abc"] {
            for encoding in [Encoding::Current, Encoding::Legacy] {
                assert_eq!(decode_value(raw.as_bytes(), encoding), raw.as_bytes(), "{raw}");
            }
        }
        // Raw values beside encoded ones do not sway the order.
        let (encoding, values) = detect(&["/sensors/kitchen", "oKxgLKOj"]);
        assert_eq!((encoding, values), (Encoding::Legacy, vec!["/sensors/kitchen".into(), "my-app".into()]));
    }

    #[test]
    fn line_breaks_of_wrapped_base64_are_skipped() {
        let long = "/sensors/".repeat(10);
        let wrapped = encode_value(long.as_bytes(), Encoding::Legacy);
        let wrapped = format!("{}\n{}\n", &wrapped[..76], &wrapped[76..]);
        assert_eq!(detect(&[&wrapped]), (Encoding::Legacy, vec![long]));
    }

    #[test]
    fn a_plus_sent_unescaped_is_read_back() {
        // "ab>" in the current order is "bm8+": a form that does not escape
        // the `+` delivers "bm8 ".
        assert_eq!(encode_value(b"ab>", Encoding::Current), "bm8+");
        assert_eq!(detect(&["bm8 "]), (Encoding::Current, vec!["ab>".into()]));
    }

    /// Every topic or client name of one to three characters, alone in a
    /// request (the hardest case: one value to judge by). Current-order
    /// values are always read right. A legacy one is read right unless it
    /// also decodes to text in the current order, which only unpadded (3
    /// characters) and a few 2-character values can; the current order
    /// wins those ties, and `legacy` mode reads them all right.
    #[test]
    fn short_values_are_told_apart() {
        let alphabet: Vec<char> = ('a'..='z').chain('A'..='Z').chain('0'..='9').chain(['/', '-', '_', '.']).collect();
        let mut ambiguous = [0usize; 4];
        let mut words = Vec::new();
        for &a in &alphabet {
            words.push(a.to_string());
            for &b in &alphabet {
                words.push(format!("{a}{b}"));
                for &c in &alphabet {
                    words.push(format!("{a}{b}{c}"));
                }
            }
        }
        for word in &words {
            let current = encode_value(word.as_bytes(), Encoding::Current);
            assert_eq!(detect(&[&current]), (Encoding::Current, vec![word.clone()]), "{word:?} as {current}");
            let legacy = encode_value(word.as_bytes(), Encoding::Legacy);
            assert_eq!(decode_value(legacy.as_bytes(), Encoding::Legacy), word.as_bytes());
            let (encoding, _) = detect(&[&legacy]);
            if decode_as(legacy.as_bytes(), Encoding::Current).is_some() {
                assert_eq!(encoding, Encoding::Current, "{word:?}: a tie goes to the current order");
                ambiguous[word.len()] += 1;
            } else {
                assert_eq!(encoding, Encoding::Legacy, "{word:?} as {legacy}");
            }
        }
        eprintln!("legacy values also read as text the current way, by length: {ambiguous:?} of {}", words.len());
        assert_eq!(ambiguous[1], 0, "one character: the padding tells");
        assert!(ambiguous[2] * 20 < alphabet.len().pow(2), "two: under 5% ({})", ambiguous[2]);
        assert!(ambiguous[3] * 8 < alphabet.len().pow(3), "three: under 12.5% ({})", ambiguous[3]);
        // A second short value in the request settles most ties: a topic
        // and a client name of three characters each.
        let pairs = words.iter().filter(|w| w.len() == 3).step_by(97).collect::<Vec<_>>();
        let mut wrong = 0;
        for (topic, client) in pairs.iter().zip(pairs.iter().rev()) {
            let values = [topic, client].map(|w| encode_value(w.as_bytes(), Encoding::Legacy));
            wrong += usize::from(detect(&[&values[0], &values[1]]).0 != Encoding::Legacy);
        }
        assert!(wrong * 50 < pairs.len(), "two values: under 2% ({wrong} of {})", pairs.len());
    }

    #[test]
    fn modes_pin_the_order() {
        for (mode, encoding) in [(EncodingMode::Current, Encoding::Current), (EncodingMode::Legacy, Encoding::Legacy)] {
            let mut pairs = vec![("t".to_owned(), b"bm9w".to_vec())];
            assert_eq!(decode_params(&mut pairs, mode), encoding);
        }
        for mode in [EncodingMode::Auto, EncodingMode::Current, EncodingMode::Legacy] {
            assert_eq!(EncodingMode::parse(mode.name()), Some(mode));
        }
        assert_eq!(EncodingMode::parse("rot13"), None);
    }

    #[test]
    fn forms_decode_percent_and_plus() {
        let pairs = parse_form(b"topic=Y3Ay%3D%3D&message=hello+world&&flag&empty=").unwrap();
        assert_eq!(
            pairs,
            [
                ("topic".to_owned(), b"Y3Ay==".to_vec()),
                ("message".to_owned(), b"hello world".to_vec()),
                ("flag".to_owned(), Vec::new()),
                ("empty".to_owned(), Vec::new()),
            ]
        );
        assert_eq!(parse_form(b""), Ok(Vec::new()));
    }

    #[test]
    fn bad_percent_encoding_names_the_parameter() {
        assert_eq!(parse_form(b"topic=%zz"), Err(FormError::BadPercent("topic".into())));
        assert_eq!(parse_form(b"topic=abc%4"), Err(FormError::BadPercent("topic".into())));
        assert_eq!(parse_form(b"a%g1=x"), Err(FormError::BadPercent("a%g1".into())));
        assert_eq!(parse_form(b"%ff=x"), Err(FormError::NameNotUtf8));
    }
}
