//! Decodes stored session records and queued-message keys the way the
//! store loads them at start: a damaged file gives an error, never a panic
//! or an allocation sized by a length it claims. What decodes encodes back
//! to the very same bytes.
//!
//! Input: one byte `k`, then the key (`k` bytes, as many as there are),
//! then the session record.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinymq_core::store::{SessionRecord, queued_key, split_queued_key};

fuzz_target!(|input: &[u8]| {
    let Some((&k, rest)) = input.split_first() else { return };
    let (key, record) = rest.split_at(usize::from(k).min(rest.len()));
    if let Ok((namespace, client_id, seq)) = split_queued_key(key) {
        assert_eq!(queued_key(namespace, client_id, seq), key);
    }
    if let Ok(session) = SessionRecord::decode(record) {
        assert_eq!(session.encode(), record, "a session record encodes differently");
    }
});
