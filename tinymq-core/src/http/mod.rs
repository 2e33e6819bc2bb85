//! HTTP semantics, as pure functions: so far the Moustique-compatible
//! API's parameter encoding and form decoding, and request heads with their
//! limits. The endpoints and the plain API join here (the HTTP issue).

pub mod encoding;
pub mod request;
