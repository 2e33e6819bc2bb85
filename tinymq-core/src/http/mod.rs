//! HTTP semantics, as pure functions: the Moustique-compatible API's
//! parameter encoding and form decoding so far. Request parsing, the
//! endpoints and the plain API join here (the HTTP issue).

pub mod encoding;
