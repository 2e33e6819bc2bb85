//! Arbitrary bytes into the HTTP request-head parser and the Moustique form
//! and value decoding, fed in arbitrary splits as a connection would.
//! Nothing may panic; a head that parses whole must parse the same when
//! it arrived in pieces; and an encoded value must decode back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinymq_core::http::encoding::{decode_value, encode_value, parse_form};
use tinymq_core::http::request::{HttpLimits, Parsed, parse_head};

fuzz_target!(|data: &[u8]| {
    let Some((&split, input)) = data.split_first() else { return };
    let limits = HttpLimits { max_head_bytes: 512, max_headers: 8, max_body_bytes: 1024 };
    let whole = parse_head(input, &limits);
    // Partial answers while the bytes arrive never contradict the whole.
    let cut = usize::from(split).min(input.len());
    if let Ok(Parsed::Complete { head_len, .. }) = &whole {
        if cut < *head_len {
            assert_eq!(parse_head(&input[..cut], &limits), Ok(Parsed::Partial));
        }
        let body = &input[*head_len..];
        if let Ok(pairs) = parse_form(body) {
            for (_, value) in pairs {
                let _ = decode_value(&value);
            }
        }
    }
    let _ = parse_form(input);
    if let Ok(text) = std::str::from_utf8(input) {
        assert_eq!(decode_value(encode_value(text.as_bytes()).as_bytes()), text.as_bytes());
    }
});
