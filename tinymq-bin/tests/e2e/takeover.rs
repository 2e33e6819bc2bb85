//! Session takeover through the real binary: a second connection with a
//! client id in use takes it over; the first gets Disconnect 3.

use crate::support::BrokerProcess;
use tinymq_core::ReasonCode;

#[test]
fn a_second_connection_with_the_same_id_takes_over() {
    let broker = BrokerProcess::start(&[]);
    let mut first = broker.connect("device-7");
    first.subscribe("x");
    let mut second = broker.connect("device-7");
    let text = first.expect_disconnect(ReasonCode::SessionTakenOver);
    assert!(!text.is_empty(), "a reason text follows the code");

    second.subscribe("x");
    let mut publisher = broker.connect("pub");
    publisher.publish("x", b"1");
    assert_eq!(second.recv_publish().payload, b"1");
    second.ping();
    // The new holder's messages carry the id.
    publisher.subscribe("from-device");
    second.publish("from-device", b"2");
    assert_eq!(publisher.recv_publish().client_id, "device-7");
}

#[test]
fn every_takeover_disconnects_the_current_holder() {
    let broker = BrokerProcess::start(&["--threads", "2"]);
    let mut holder = broker.connect("device-8");
    for round in 0..5 {
        let next = broker.connect("device-8");
        holder.expect_disconnect(ReasonCode::SessionTakenOver);
        holder = next;
        // The closed holder's release must not free the id the new one
        // holds: the next round's takeover has to find it.
        holder.ping();
        eprintln!("round {round} done");
    }
    holder.subscribe("still");
    let mut publisher = broker.connect("pub");
    publisher.publish("still", b"here");
    assert_eq!(holder.recv_publish().payload, b"here");
}
