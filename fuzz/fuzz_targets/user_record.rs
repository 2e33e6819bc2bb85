//! Decodes bytes as the records a store file holds, as a damaged or
//! hostile file would present them: a user record and a stored message.
//!
//! Neither decoder may panic. A user record that decodes encodes back to
//! the very bytes it came from (every field is checked, nothing is
//! normalised); a stored message that decodes survives encode and decode
//! unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tinymq_core::auth::UserRecord;
use tinymq_core::store::{decode_message, encode_message};

fuzz_target!(|data: &[u8]| {
    if let Ok(user) = UserRecord::decode("fuzz", data) {
        assert_eq!(user.encode(), data, "{user:?}");
    }
    if let Ok(message) = decode_message(data) {
        assert_eq!(decode_message(&encode_message(&message)), Ok(message));
    }
});
