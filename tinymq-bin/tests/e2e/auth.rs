//! Connect credentials and `--allow-anonymous` through the real binary, on
//! a broker without users (users of a data directory: `users.rs`).

use crate::support::BrokerProcess;
use tinymq_core::{Frame, ReasonCode};

#[test]
fn unknown_credentials_are_refused_with_not_authorized_and_no_connack() {
    let broker = BrokerProcess::start(&[]);
    let mut client = broker.open();
    client.send(&Frame::connect("someone", b"nobody\0secret"));
    // The same words for an unknown user as for a wrong password.
    assert_eq!(client.expect_disconnect(ReasonCode::NotAuthorized), "unknown user or wrong password");
    broker.connect("anonymous").ping();
}

#[test]
fn credentials_without_the_separator_are_a_protocol_error() {
    let broker = BrokerProcess::start(&[]);
    let mut client = broker.open();
    client.send(&Frame::connect("someone", b"just-a-user"));
    assert_eq!(client.expect_disconnect(ReasonCode::ProtocolError), "credentials must be user, a 0x00 byte, password");
    let mut client = broker.open();
    client.send(&Frame::connect("someone", b"user\0\xff\xfe"));
    assert_eq!(client.expect_disconnect(ReasonCode::ProtocolError), "password is not UTF-8");
}

#[test]
fn anonymous_clients_are_refused_when_not_allowed() {
    let broker = BrokerProcess::start(&["--allow-anonymous", "false"]);
    let mut client = broker.open();
    client.send(&Frame::connect("anonymous", b""));
    assert_eq!(client.expect_disconnect(ReasonCode::NotAuthorized), "this broker needs credentials");
}
