//! MQTT sessions and the router together, as the event loop drives them: a
//! few connections of either version, arbitrary sequences of well-formed
//! packets (over a small alphabet of client ids, filters and topics) and
//! raw bytes, time steps and dropped connections. After every step each
//! connection's output must decode as packets of its version (the broker
//! never sends a malformed packet, whatever it was sent), with nothing
//! before CONNACK but a CONNACK, and nothing after a DISCONNECT.
//!
//! Input: a sequence of operations, each an op byte (bits 0-1: which
//! connection; bits 2-5: what) and, for raw bytes, a length and the bytes.

#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use tinymq_core::auth::Identity;
use tinymq_core::broker::{Effects, Origin};
use tinymq_core::mqtt::{
    self, Ack, Connect, Decoded, Decoder, Disconnect, Packet, Properties, PropertiesBuf, Property, ProtocolVersion,
    Publish, QoS, Request, ServerSession, SessionConfig, Step, Subscribe, SubscribeFilter, SubscriptionOptions,
};
use tinymq_core::{Router, SubscriberId};

const CONNS: usize = 3;
const IDS: [&str; 3] = ["a", "b", ""];
const FILTERS: [&str; 5] = ["t/#", "t/+", "t/x", "#", "$share/g/t"];
const TOPICS: [&str; 4] = ["t/x", "t/y", "u", "$SYS/x"];
const ORIGIN: Origin = Origin { unix_time: 0, ip: None };

struct Conn {
    session: ServerSession,
    version: ProtocolVersion,
    subscriber: Option<SubscriberId>,
    acked: bool,
    ended: bool,
}

fuzz_target!(|input: &[u8]| {
    #[allow(clippy::disallowed_methods)] // the virtual clock's start
    let mut now = Instant::now();
    let config = SessionConfig { outbound_limit: 4096, max_inflight: 2, ..SessionConfig::default() };
    let mut router: Router<usize> = Router::new();
    let mut conns: Vec<Option<Conn>> = (0..CONNS).map(|_| None).collect();
    let mut rest = input;
    while let [op, tail @ ..] = rest {
        rest = tail;
        let index = usize::from(op & 3) % CONNS;
        let what = (op >> 2) & 15;
        let conn = conns[index].get_or_insert_with(|| Conn {
            session: ServerSession::new(now, &config),
            version: if what & 1 == 0 { ProtocolVersion::V311 } else { ProtocolVersion::V5 },
            subscriber: None,
            acked: false,
            ended: false,
        });
        let version = conn.version;
        let arg = usize::from(op >> 6);
        let bytes = match what {
            0 | 1 => {
                let mut properties = PropertiesBuf::new();
                properties.push(Property::ReceiveMaximum(1)).push(Property::MaximumPacketSize(64));
                let connect = Connect {
                    version,
                    client_id: IDS[arg % IDS.len()],
                    clean_start: arg != 1,
                    keep_alive: 10,
                    will: None,
                    username: None,
                    password: None,
                    properties: if version == ProtocolVersion::V5 {
                        properties.as_properties()
                    } else {
                        Properties::EMPTY
                    },
                };
                mqtt::to_vec(&Packet::Connect(connect), version)
            }
            2 | 3 => {
                let filter = SubscribeFilter {
                    filter: FILTERS[arg % FILTERS.len()],
                    options: SubscriptionOptions::qos(QoS::AtLeastOnce),
                };
                mqtt::to_vec(
                    &Packet::Subscribe(Subscribe {
                        packet_id: 1,
                        properties: Properties::EMPTY,
                        filters: vec![filter],
                    }),
                    version,
                )
            }
            4..=7 => {
                let qos = if what & 1 == 0 { QoS::AtMostOnce } else { QoS::AtLeastOnce };
                let publish = Publish {
                    dup: false,
                    qos,
                    retain: what >= 6,
                    topic: TOPICS[arg % TOPICS.len()],
                    packet_id: (qos == QoS::AtLeastOnce).then_some(7),
                    properties: Properties::EMPTY,
                    payload: &[0; 40][..arg * 12],
                };
                mqtt::to_vec(&Packet::Publish(publish), version)
            }
            8 => mqtt::to_vec(
                &Packet::PubAck(Ack { packet_id: arg as u16 + 1, reason: 0, properties: Properties::EMPTY }),
                version,
            ),
            9 => mqtt::to_vec(&Packet::PingReq, version),
            10 => mqtt::to_vec(&Packet::Disconnect(Disconnect { reason: 0, properties: Properties::EMPTY }), version),
            11 => {
                now += Duration::from_secs(4 << arg);
                for conn in conns.iter_mut().flatten() {
                    let _ = conn.session.handle_timeout(now);
                }
                check_all(&mut conns, &mut router);
                continue;
            }
            12 => {
                // The network connection is gone: its will, then its slot.
                if let Some(mut gone) = conns[index].take() {
                    if let (Some(will), Some(namespace)) = (gone.session.take_will(), gone.session.namespace()) {
                        let effects = mqtt::broker::publish_will(
                            &mut router,
                            namespace,
                            gone.session.client_id().cloned(),
                            will,
                            ORIGIN,
                        );
                        deliver(&mut conns, &effects);
                    }
                    tinymq_core::broker::release(&mut router, gone.subscriber);
                }
                check_all(&mut conns, &mut router);
                continue;
            }
            _ => {
                let [len, tail @ ..] = rest else { return };
                let (raw, tail) = tail.split_at(usize::from(*len).min(tail.len()));
                rest = tail;
                raw.to_vec()
            }
        };
        feed(&mut conns, index, &mut router, &bytes, now);
        check_all(&mut conns, &mut router);
    }
});

fn feed(conns: &mut [Option<Conn>], index: usize, router: &mut Router<usize>, bytes: &[u8], now: Instant) {
    let mut used = 0;
    loop {
        let Some(conn) = conns[index].as_mut() else { return };
        if !conn.session.wants_read() {
            return;
        }
        let (consumed, request) = match conn.session.handle_input(now, &bytes[used..]) {
            Ok(Step::Incomplete { .. }) | Err(_) => return,
            Ok(Step::Handled { consumed }) => (consumed, None),
            Ok(Step::Request { consumed, request }) => (consumed, Some(request)),
        };
        used += consumed;
        let effects = match request {
            None => continue,
            Some(Request::Connect { .. }) => {
                let effects =
                    mqtt::broker::connect(router, &mut conn.session, index, true, Ok(Identity::Anonymous), ORIGIN);
                conn.subscriber = effects.connected.or(conn.subscriber);
                if let Some(old) = effects.taken_over {
                    if let Some(old) = conns[old].as_mut() {
                        old.session.close(tinymq_core::ReasonCode::SessionTakenOver);
                    }
                }
                continue;
            }
            Some(request) => mqtt::broker::execute(router, &mut conn.session, conn.subscriber, request, ORIGIN),
        };
        deliver(conns, &effects);
    }
}

fn deliver(conns: &mut [Option<Conn>], effects: &Effects<usize>) {
    let Some(delivery) = &effects.delivery else { return };
    for &receiver in &effects.receivers {
        if let Some(conn) = conns[receiver].as_mut() {
            let _ = conn.session.deliver(delivery);
        }
    }
}

/// Every connection's output decodes in its version, CONNACK first,
/// nothing after DISCONNECT.
fn check_all(conns: &mut [Option<Conn>], router: &mut Router<usize>) {
    let decoder = Decoder::new(1 << 20, QoS::ExactlyOnce);
    for slot in conns.iter_mut() {
        let Some(conn) = slot else { continue };
        let mut slices: [&[u8]; 64] = [&[]; 64];
        let n = conn.session.outbound().front_slices(&mut slices);
        let bytes: Vec<u8> = slices[..n].concat();
        let len = conn.session.outbound().len();
        conn.session.outbound_mut().consume(len);
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            assert!(!conn.ended, "output after DISCONNECT: {rest:02x?}");
            let Ok(Decoded::Complete { packet, consumed }) = decoder.decode(conn.version, rest) else {
                panic!("the broker sent bytes that do not decode: {rest:02x?}");
            };
            match packet {
                Packet::ConnAck(_) => conn.acked = true,
                Packet::Disconnect(_) => conn.ended = true,
                other => assert!(conn.acked, "{other:?} before CONNACK"),
            }
            rest = &rest[consumed..];
        }
        if conn.session.is_closed() {
            tinymq_core::broker::release(router, conn.subscriber.take());
        }
    }
}
