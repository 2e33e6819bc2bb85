//! The Moustique parameter encoding and `application/x-www-form-urlencoded`
//! decoding.
//!
//! The Moustique clients (Python, JavaScript and the rest) encode each
//! value as standard Base64 and then apply ROT13 to the letters of the
//! Base64 text; they decode the reverse way. HTTP_API.md words it as
//! "ROT13, then Base64", which gives different bytes (the two steps do not
//! commute): the clients are the contract, so this module follows them.
//! A value that does not decode is taken as it is, as Moustique does.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// Rotates ASCII letters by 13 places; every other byte stays.
fn rot13_byte(byte: u8) -> u8 {
    match byte {
        b'a'..=b'z' => (byte - b'a' + 13) % 26 + b'a',
        b'A'..=b'Z' => (byte - b'A' + 13) % 26 + b'A',
        _ => byte,
    }
}

/// Encodes a value the way the Moustique clients do: Base64, then ROT13.
pub fn encode_value(value: &[u8]) -> String {
    STANDARD.encode(value).bytes().map(|b| char::from(rot13_byte(b))).collect()
}

/// Decodes a value: ROT13, then Base64. A value that is not valid Base64,
/// or that decodes to something other than UTF-8 text (the clients only
/// encode text), is returned as it is: a raw `/sensors/kitchen` is valid
/// Base64 but decodes to noise.
pub fn decode_value(value: &[u8]) -> Vec<u8> {
    let rotated: Vec<u8> = value.iter().map(|&b| rot13_byte(b)).collect();
    match STANDARD.decode(&rotated) {
        Ok(decoded) if std::str::from_utf8(&decoded).is_ok() => decoded,
        _ => value.to_vec(),
    }
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

    /// Computed with Python's `codecs.encode(base64.b64encode(s), 'rot13')`,
    /// which is what the Moustique Python client's `enc` does.
    const VECTORS: &[(&str, &str)] = &[
        ("/sensors/bedroom/temperature", "Y3AyoaAipaZiLzIxpz9ioF90MJ1jMKWuqUIlMD=="),
        ("23.1", "ZwZhZD=="),
        ("my-app", "oKxgLKOj"),
        ("a", "LD=="),
        ("ab", "LJV="),
        ("Hej, detta är ett testmeddelande!", "FTIdYPOxMKE0LFQQcUVtMKE0VUEyp3EgMJExMJkuozEyVD=="),
        (r#"{"topic": "/a", "message": "1"}"#, "rlW0o3OcLlV6VPViLFVfVPWgMKAmLJqyVwbtVwRvsD=="),
    ];

    #[test]
    fn values_encode_and_decode_like_the_moustique_clients() {
        for (plain, encoded) in VECTORS {
            assert_eq!(encode_value(plain.as_bytes()), *encoded, "{plain}");
            assert_eq!(decode_value(encoded.as_bytes()), plain.as_bytes(), "{encoded}");
        }
        assert_eq!(encode_value(b""), "");
        assert_eq!(decode_value(b""), b"");
    }

    #[test]
    fn values_that_are_not_base64_are_taken_as_they_are() {
        for raw in ["/sensors/kitchen", "23.5 degrees", "a=b", "%%%"] {
            assert_eq!(decode_value(raw.as_bytes()), raw.as_bytes(), "{raw}");
        }
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
