//! Decodes the keys and records of messages queued for Moustique clients
//! the way the store loads them at start: a damaged file gives an error,
//! never a panic or an allocation sized by a count it claims. What decodes
//! encodes back: a key to the very same bytes (the client's name is
//! length-prefixed, so each key has one spelling), a record to one that
//! decodes to the same message and subscribers.
//!
//! Input: one byte `k`, then the key (`k` bytes, as many as there are),
//! then the record.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinymq_core::store::{decode_http_queued, encode_http_queued, http_queued_key, split_http_queued_key};

fuzz_target!(|input: &[u8]| {
    let Some((&kind, rest)) = input.split_first() else { return };
    let (key, record) = rest.split_at(usize::from(kind).min(rest.len()));
    if let Ok((namespace, client, seq)) = split_http_queued_key(key) {
        assert_eq!(http_queued_key(namespace, client, seq), key);
    }
    if let Ok((message, subscribers)) = decode_http_queued(record) {
        let again = decode_http_queued(&encode_http_queued(&message, &subscribers));
        assert_eq!(again, Ok((message, subscribers)));
    }
});
