//! The sans-IO core of the NATS bridge: the NATS client protocol and the
//! mapping of tinymq topics to NATS subjects.
//!
//! | module | owns |
//! |---|---|
//! | `codec` | [`parse`] of server operations (INFO, MSG, HMSG, PING, PONG, +OK, -ERR), [`ClientOp::encode`] of client ones |
//! | `headers` | [`Headers`] of HPUB/HMSG, and the bridge's [`ORIGIN_HEADER`] and [`RETAIN_HEADER`] |
//! | `info` | [`ServerInfo`] from INFO's JSON, [`ConnectOptions`] to CONNECT's |
//! | `mapping` | [`SubjectMapping`]: topics and filters to subjects and back, with the escaping scheme |

mod codec;
mod headers;
mod info;
mod mapping;

pub use codec::{
    ClientOp, DEFAULT_MAX_PAYLOAD, HEADER_VERSION, MAX_CONTROL_LINE, Msg, ParseError, ParseLimits, Parsed, ServerOp,
    SubjectError, check_subject, parse,
};
pub use headers::{HeaderError, Headers, ORIGIN_HEADER, RETAIN_HEADER, RETAIN_VALUE};
pub use info::{ConnectOptions, Credentials, InfoError, MAX_CONNECT_URLS, ServerInfo};
pub use mapping::{MappingError, SubjectMapping};
