//! What the core's integration tests share.

use tinymq_core::http::clients::HttpClientId;
use tinymq_core::http::service::SinkKind;

/// Every kind of sink the shells have.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sink {
    /// A binary-protocol connection.
    Conn(&'static str),
    /// A Moustique client's PICKUP queue.
    Http(HttpClientId),
    /// An SSE stream (an HTTP connection's own sink).
    Stream(&'static str),
    /// An in-process client's queue.
    Local(&'static str),
}

impl SinkKind for Sink {
    fn http_client(&self) -> Option<HttpClientId> {
        match self {
            Sink::Http(id) => Some(*id),
            _ => None,
        }
    }

    fn transport(&self) -> &'static str {
        match self {
            Sink::Conn(_) => "tcp",
            Sink::Http(_) => "http",
            Sink::Stream(_) => "sse",
            Sink::Local(_) => "local",
        }
    }
}
