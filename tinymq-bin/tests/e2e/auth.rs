//! Connect credentials and `--allow-anonymous` through the real binary, on
//! a broker without users (users of a data directory: `users.rs`).

use crate::support::BrokerProcess;
use tinymq_core::{Frame, ReasonCode};

#[test]
fn unknown_credentials_are_refused_with_not_authorized_and_no_connack() {
    let broker = BrokerProcess::start(&[]);
    let mut client = broker.open();
    client.send(&Frame::connect("someone", b"nobody\0secret"));
    client.expect_disconnect(ReasonCode::NotAuthorized);
    broker.connect("anonymous").ping();
}

#[test]
fn credentials_without_the_separator_are_a_protocol_error() {
    let broker = BrokerProcess::start(&[]);
    let mut client = broker.open();
    client.send(&Frame::connect("someone", b"just-a-user"));
    client.expect_disconnect(ReasonCode::ProtocolError);
    let mut client = broker.open();
    client.send(&Frame::connect("someone", b"user\0\xff\xfe"));
    client.expect_disconnect(ReasonCode::ProtocolError);
}

#[test]
fn anonymous_clients_are_refused_when_not_allowed() {
    let broker = BrokerProcess::start(&["--allow-anonymous", "false"]);
    let mut client = broker.open();
    client.send(&Frame::connect("anonymous", b""));
    let text = client.expect_disconnect(ReasonCode::NotAuthorized);
    assert!(!text.is_empty());
}
