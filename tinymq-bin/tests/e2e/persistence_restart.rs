//! What a restart of the real binary on the same `--data` directory keeps:
//! Moustique HTTP clients with their subscriptions and what was queued for
//! their PICKUP (at length, and across kill -9, in
//! `http_pickup_durable.rs`), and stored values set by POST. Stored values set by a binary
//! retained Publish are covered by `retained.rs`, acknowledged POSTs across
//! kill -9 by `http_durability.rs`.

use std::time::Duration;

use crate::support::http::{HttpConn, Json, JsonExt, eventually, moustique_json, pickup, post, subscribe, triples};
use crate::support::{BrokerProcess, ScratchDir, WAIT};
use serde_json::json;

/// A broker with HTTP on fresh ports, keeping its store in `data`: the
/// same directory makes a restart, whatever the ports.
fn start(data: &ScratchDir, extra: &[&str]) -> BrokerProcess {
    let dir = data.path().to_str().expect("a UTF-8 path");
    let mut flags = vec!["--data", dir];
    flags.extend_from_slice(extra);
    BrokerProcess::start_http(&flags)
}

/// The CLIENTS entry called `name`, if listed.
fn client_entry(clients: &Json, name: &str) -> Option<Json> {
    clients.items().iter().find(|c| c.get("Name") == Some(&Json::String(name.into()))).cloned()
}

fn owned(triples: &[(&str, &str, &str)]) -> Vec<(String, String, String)> {
    triples.iter().map(|&(f, t, m)| (f.into(), t.into(), m.into())).collect()
}

fn assert_told_to_resubscribe(http: std::net::SocketAddr, client: &str) {
    let reply = moustique_json(http, "PICKUP", &[("client", client)]);
    let keys: Vec<&str> = reply.members().iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["/server/action/resubscribe"], "{client} is unknown: {reply}");
}

#[test]
fn http_clients_and_their_subscriptions_survive_a_clean_restart() {
    let data = ScratchDir::new();
    let mut broker = start(&data, &[]);
    let http = broker.http_addr();
    subscribe(http, "keeper", "/home/+/temperature");
    subscribe(http, "keeper", "/home/#");
    subscribe(http, "keeper", "/home/#");
    subscribe(http, "gardener", "/garden/#");
    // Queued for keeper, and the topic's stored value.
    post(http, "/home/kitchen/temperature", "21.5", "thermostat");
    let before = client_entry(&moustique_json(http, "CLIENTS", &[]), "keeper").expect("keeper listed");
    broker.stop();

    let broker = start(&data, &[]);
    let http = broker.http_addr();
    let value = moustique_json(http, "GETVAL", &[("topic", "/home/kitchen/temperature")]);
    assert_eq!(value.field("message").str(), "21.5", "the value set by POST is back: {value}");
    // Known without subscribing again, with what was queued before the
    // stop (http_pickup_durable.rs tests queues at length).
    let mut picked = triples(&pickup(http, "keeper"));
    picked.sort();
    assert_eq!(
        picked,
        owned(&[
            ("/home/#", "/home/kitchen/temperature", "21.5"),
            ("/home/+/temperature", "/home/kitchen/temperature", "21.5"),
        ]),
        "keeper's queue is back"
    );
    let reply = moustique_json(http, "PICKUP", &[("client", "keeper")]);
    assert_eq!(reply, json!({}), "and empty once picked up");

    post(http, "/home/kitchen/temperature", "22.0", "thermostat");
    post(http, "/garden/soil", "dry", "probe");
    post(http, "/office/temperature", "19.0", "thermostat");
    let mut picked = triples(&pickup(http, "keeper"));
    picked.sort();
    assert_eq!(
        picked,
        owned(&[
            ("/home/#", "/home/kitchen/temperature", "22.0"),
            ("/home/+/temperature", "/home/kitchen/temperature", "22.0"),
        ]),
        "both filters are back, once each"
    );
    assert_eq!(triples(&pickup(http, "gardener")), owned(&[("/garden/#", "/garden/soil", "dry")]));

    let after = client_entry(&moustique_json(http, "CLIENTS", &[]), "keeper").expect("keeper listed");
    assert_eq!(after.field("Subscriptions"), before.field("Subscriptions"), "{after}");
    assert_eq!(after.field("FirstSeen"), before.field("FirstSeen"), "first seen as before the restart: {after}");

    assert_told_to_resubscribe(http, "stranger");
}

#[test]
fn a_client_dropped_for_inactivity_before_the_stop_is_not_back() {
    let data = ScratchDir::new();
    let mut broker = start(&data, &["--http-client-timeout", "1"]);
    let http = broker.http_addr();
    subscribe(http, "fleeting", "/a/#");
    // CLIENTS does not touch it: poll until the broker has dropped it.
    eventually(Duration::from_secs(1) + WAIT, "fleeting leaves CLIENTS", || {
        client_entry(&moustique_json(http, "CLIENTS", &[]), "fleeting").is_none().then_some(())
    });
    broker.stop();

    let broker = start(&data, &[]);
    let http = broker.http_addr();
    assert!(client_entry(&moustique_json(http, "CLIENTS", &[]), "fleeting").is_none());
    assert_told_to_resubscribe(http, "fleeting");
}

#[test]
fn subscriptions_acknowledged_under_immediate_durability_survive_kill_9() {
    const CLIENTS: usize = 20;
    let data = ScratchDir::new();
    let flags = ["--durability", "immediate"];
    let mut broker = start(&data, &flags);
    // As fast as the broker answers, on one keep-alive connection, then the
    // kill right after the last 200: each 200 must mean committed.
    let mut conn = HttpConn::open(broker.http_addr());
    for n in 0..CLIENTS {
        let (client, filter) = (format!("durable-{n}"), format!("/crash/{n}/#"));
        conn.moustique("SUBSCRIBE", &[("topic", &filter), ("client", &client)])
            .assert_empty_ok(&format!("SUBSCRIBE {client}"));
    }
    conn.moustique("SUBSCRIBE", &[("topic", "/second/+"), ("client", "durable-0")])
        .assert_empty_ok("a second filter for durable-0");
    broker.kill();

    let broker = start(&data, &flags);
    let http = broker.http_addr();
    for n in 0..CLIENTS {
        let (client, topic) = (format!("durable-{n}"), format!("/crash/{n}/after"));
        post(http, &topic, "hello", "test");
        assert_eq!(
            triples(&pickup(http, &client)),
            owned(&[(&format!("/crash/{n}/#"), &topic, "hello")]),
            "{client} is back with its subscription"
        );
    }
    post(http, "/second/x", "again", "test");
    assert_eq!(triples(&pickup(http, "durable-0")), owned(&[("/second/+", "/second/x", "again")]));
}
