//! Decodes stored keys and records the way the store loads them at start:
//! a damaged file gives an error, never a panic or an allocation sized by
//! a length it claims. What decodes encodes back: a value to an equal
//! value, a session's queued message (and whether it was retained) to the
//! very same record bytes, an HTTP client to the very same key and record
//! bytes.
//!
//! Input: one byte `k`, then the key (`k >> 1` bytes, as many as there
//! are), then the record. `k` even: a stored value; odd: an HTTP client.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinymq_core::store::{
    StoredHttpClient, decode_message, decode_queued, encode_http_client, encode_message, encode_queued_into,
    http_client_key, split_value_key, value_key,
};

fuzz_target!(|input: &[u8]| {
    let Some((&kind, rest)) = input.split_first() else { return };
    let (key, record) = rest.split_at(usize::from(kind >> 1).min(rest.len()));
    if kind & 1 == 0 {
        if let Ok((namespace, topic)) = split_value_key(key) {
            assert_eq!(value_key(namespace, topic), key);
        }
        if let Ok(message) = decode_message(record) {
            assert_eq!(decode_message(&encode_message(&message)).as_ref(), Ok(&message));
        }
        if let Ok((message, retained)) = decode_queued(record) {
            let mut again = Vec::new();
            encode_queued_into(&message, retained, &mut again);
            assert_eq!(again, record);
        }
    } else if let Ok(client) = StoredHttpClient::decode(key, record) {
        let filters: Vec<String> = client.filters.iter().map(|f| f.as_str().to_owned()).collect();
        assert_eq!(encode_http_client(client.first_seen, &filters), record);
        assert_eq!(http_client_key(&client.namespace, &client.client), key);
    }
});
