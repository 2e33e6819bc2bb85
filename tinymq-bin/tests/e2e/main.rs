//! End-to-end tests over real sockets against the real `tinymq` binary
//! (`CARGO_BIN_EXE_tinymq`, or `TINYMQ_BIN`), one test binary with a module
//! per area. The helpers they share are in `support`.
//!
//! Outside programs some tests drive (curl, node with `tests/browser`'s
//! packages, chromium, nats-server, mosquitto, the Python venv at
//! `target/test-venv`) are installed by `bash tests/run.sh`; a test that
//! cannot find one fails, naming that step. No test installs anything.

mod support;

mod access;
mod auth;
mod bench_protocols;
mod bridge;
mod bridge_connect;
mod bridge_mqtt;
mod bridge_mqtt_durable;
mod bridge_mqtt_qos;
mod bridge_secure;
mod cli;
mod config;
mod embedding;
mod hostile;
mod hostile_http;
mod http_durability;
mod http_limits;
mod http_moustique;
mod http_pickup_durable;
mod http_plain;
mod keepalive;
mod local_qos;
mod malformed;
mod moustique_real_clients;
mod mqtt;
mod mqtt_sessions;
mod observability;
mod persistence_restart;
mod pubsub;
mod qos;
mod retained;
mod scale;
mod store_batched;
mod store_full_disk;
mod store_start_errors;
mod takeover;
mod tls;
mod unix_socket;
mod users;
mod web_ui;
mod websocket;
mod wildcards;
