//! HTTP semantics, as pure functions and state machines with no I/O: the
//! Moustique-compatible API and the plain API (README.md, "HTTP").
//!
//! | module | owns |
//! |---|---|
//! | [`request`] | request heads, parsed incrementally, and their limits |
//! | [`encoding`] | Moustique's parameter encoding and form decoding |
//! | [`call`] | what a request asks for ([`call::Call`]), or why it is refused |
//! | [`service`] | what each call does to the router ([`service::handle`]) |
//! | `service::state` | [`service::HttpState`] and [`service::HttpConfig`]: clients, rates, posters, peer hosts, the request log |
//! | `service::calls` | one function per call, dispatched by `execute` |
//! | `service::documents` | the JSON documents (STATS, CLIENTS, POSTERS, CROOKS, PEERHOSTS, LOG) as structs |
//! | `service::status_page` | the HTML `/STATUS` page |
//! | `service::prometheus` | the `/metrics` text |
//! | [`clients`] | Moustique clients and their PICKUP queues |
//! | [`queue_record`] | a queued message's stored record and key |
//! | [`conn`] | one connection: framing, keep-alive, timeouts, event streams |
//! | [`response`] | responses as bytes |
//! | [`json`] | the message object |
//! | [`ui`] | the web UI's files, compiled in |
//! | [`upgrade`] | which requests become WebSocket connections (`/ws`, `/mqtt`) |
//! | `topic_search` | GETVALSBYREGEX's bounded search of the stored topics |

pub mod call;
pub mod clients;
pub mod conn;
pub mod encoding;
pub mod json;
pub mod queue_record;
pub mod request;
pub mod response;
pub mod service;
mod topic_search;
pub mod ui;
pub mod upgrade;
