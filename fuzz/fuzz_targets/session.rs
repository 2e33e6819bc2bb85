//! Sessions and the router together, as the event loop drives them: a few
//! connections, arbitrary frame sequences (well-formed frames over a small
//! alphabet of client ids, filters and topics, plus raw bytes) and time
//! steps. After every step each connection's output is read and checked:
//! no Publish before its ConnAck, nothing after a Disconnect, and each
//! publish reaches every connected subscriber whose acknowledged filters
//! match it exactly once, and no one else. QoS 1 publishes (arg bit 0x40)
//! are each answered by one PubAck carrying their packet id; Subscribe may
//! ask for QoS 1 and is never granted more than asked; Connect may carry a
//! persistent-session flag and a will; PubAck from the client (Ping's op
//! with arg bit 0x01) with any id never disturbs anyone else.

#![no_main]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use tinymq_core::broker::{self, Origin};
use tinymq_core::topic::{Filter, TopicLimits, TopicName};
use tinymq_core::{
    ConnectOptions, Decoded, Decoder, Frame, FrameType, NamespaceId, Qos, Router, Session, SessionConfig, Step,
    SubscriberId, Will,
};

const CONNS: usize = 3;
const IDS: [&str; 3] = ["a", "b", "a"];
const FILTERS: [&str; 6] = ["t/#", "t/+", "t/x", "#", "+/x", "$SYS/#"];
const TOPICS: [&str; 4] = ["t/x", "t/y", "u/x", "$SYS/x"];

struct Conn {
    session: Session,
    subscriber: Option<SubscriberId>,
    received: Vec<u8>,
    /// What the peer has seen: a ConnAck, a Disconnect.
    acked: bool,
    disconnected: bool,
    /// Filters the broker acknowledged, as the peer knows them.
    filters: BTreeSet<&'static str>,
}

struct World {
    now: Instant,
    router: Router<usize>,
    conns: Vec<Conn>,
}

impl World {
    fn feed(&mut self, index: usize, bytes: &[u8]) {
        let mut used = 0;
        while used < bytes.len() || used == 0 {
            let conn = &mut self.conns[index];
            let step = conn.session.handle_input(self.now, &bytes[used..]);
            match step {
                Ok(Step::Incomplete { .. }) | Err(_) => break,
                Ok(Step::Handled { consumed }) => used += consumed,
                Ok(Step::Request { consumed, request }) => {
                    used += consumed;
                    let origin = Origin { unix_time: 1_700_000_000, ip: None };
                    let effects = broker::execute(
                        &mut self.router,
                        &mut conn.session,
                        conn.subscriber,
                        index,
                        request,
                        origin,
                        |_| Ok(NamespaceId::PUBLIC),
                    );
                    if effects.connected.is_some() {
                        conn.subscriber = effects.connected;
                    }
                    if let Some(old) = effects.taken_over {
                        let _ = self.conns[old].session.refuse(tinymq_core::ReasonCode::SessionTakenOver, "taken over");
                        broker::release(&mut self.router, self.conns[old].subscriber.take());
                    }
                    if let Some(delivery) = effects.delivery {
                        for receiver in effects.receivers {
                            let _ = self.conns[receiver].session.deliver(&delivery);
                        }
                    }
                }
            }
            if self.conns[index].session.is_closed() {
                broker::release(&mut self.router, self.conns[index].subscriber.take());
                break;
            }
            if used == 0 {
                break;
            }
        }
    }

    /// Reads every connection's output and checks the order invariants;
    /// returns the Publish topics each received and the PubAck ids.
    fn drain(&mut self) -> (Vec<Vec<String>>, Vec<Vec<u16>>) {
        let decoder = Decoder::default();
        let mut published = vec![Vec::new(); CONNS];
        let mut acks = vec![Vec::new(); CONNS];
        for (index, conn) in self.conns.iter_mut().enumerate() {
            loop {
                let mut slices: [&[u8]; 64] = [&[]; 64];
                let n = conn.session.outbound().front_slices(&mut slices);
                if n == 0 {
                    break;
                }
                let total: usize = slices[..n].iter().map(|s| s.len()).sum();
                for slice in &slices[..n] {
                    conn.received.extend_from_slice(slice);
                }
                conn.session.outbound_mut().consume(total);
            }
            let mut at = 0;
            while let Ok(Decoded::Frame { frame, consumed }) = decoder.decode(&conn.received[at..]) {
                at += consumed;
                assert!(!conn.disconnected, "conn {index}: {:?} after a Disconnect", frame.kind);
                match frame.kind {
                    FrameType::ConnAck => conn.acked = true,
                    FrameType::Disconnect => {
                        conn.disconnected = true;
                        conn.filters.clear();
                    }
                    FrameType::Publish => {
                        assert!(conn.acked, "conn {index}: a Publish before its ConnAck");
                        // Retained values arrive behind a SubAck, not from a publish.
                        if !frame.retain {
                            published[index].push(frame.topic.to_owned());
                        }
                    }
                    FrameType::PubAck => {
                        assert!(conn.acked, "conn {index}: a PubAck before its ConnAck");
                        acks[index].push(frame.packet_id);
                    }
                    FrameType::SubAck if frame.payload.is_empty() => {
                        assert_eq!(frame.qos, Qos::AtMostOnce, "this broker keeps no QoS 1 queues");
                        if let Some(f) = FILTERS.iter().find(|f| **f == frame.topic) {
                            conn.filters.insert(f);
                        }
                    }
                    FrameType::UnsubAck if frame.payload.is_empty() => {
                        conn.filters.retain(|f| *f != frame.topic);
                    }
                    _ => {}
                }
            }
            conn.received.drain(..at);
        }
        (published, acks)
    }
}

fuzz_target!(|data: &[u8]| {
    #[allow(clippy::disallowed_methods)]
    let start = Instant::now();
    let config = SessionConfig::default();
    let mut world = World {
        now: start,
        router: Router::new(),
        conns: (0..CONNS)
            .map(|_| Conn {
                session: Session::new(start, &config),
                subscriber: None,
                received: Vec::new(),
                acked: false,
                disconnected: false,
                filters: BTreeSet::new(),
            })
            .collect(),
    };
    let limits = TopicLimits::default();
    let mut bytes = data.iter().copied();
    while let (Some(op), Some(arg)) = (bytes.next(), bytes.next()) {
        let index = (op >> 4) as usize % CONNS;
        let arg = arg as usize;
        // Who should get a publish, judged before it is sent.
        let mut expected: Option<(String, Vec<usize>)> = None;
        let mut qos1_id = None;
        let mut options = Vec::new();
        let frame = match op % 9 {
            0 if arg & 0xc0 != 0 => {
                // A persistent session and/or a will, built by the encoder.
                let will = (arg & 0x40 != 0).then(|| Will {
                    topic: TOPICS[(arg >> 2) % TOPICS.len()],
                    payload: b"w",
                    retain: arg & 0x20 != 0,
                    qos: if arg & 0x10 != 0 { Qos::AtLeastOnce } else { Qos::AtMostOnce },
                });
                let connect = ConnectOptions { persistent: arg & 0x80 != 0, session_expiry: 0, will, credentials: b"" };
                connect.encode(IDS[arg % IDS.len()], &mut options);
                world.feed(index, &options);
                world.drain();
                continue;
            }
            0 => Frame::connect(IDS[arg % IDS.len()], b""),
            1 => {
                let qos = if arg & 0x40 != 0 { Qos::AtLeastOnce } else { Qos::AtMostOnce };
                Frame { qos, ..Frame::with_topic(FrameType::Subscribe, FILTERS[arg % FILTERS.len()]) }
            }
            2 => Frame::with_topic(FrameType::Unsubscribe, FILTERS[arg % FILTERS.len()]),
            3 | 4 => {
                let topic = TOPICS[arg % TOPICS.len()];
                let publisher = &world.conns[index];
                let open = |conn: &Conn| conn.acked && !conn.disconnected && !conn.session.is_closed();
                if open(publisher) && !topic.starts_with('$') {
                    let name = TopicName::new(topic, &limits).expect("a valid topic");
                    let receivers = (0..CONNS)
                        .filter(|&c| {
                            let conn = &world.conns[c];
                            open(conn) && conn.filters.iter().any(|f| Filter::new(f, &limits).unwrap().matches(name))
                        })
                        .collect();
                    expected = Some((topic.to_owned(), receivers));
                }
                if arg & 0x40 != 0 {
                    let id = (arg as u16 >> 2 & 3) + 1;
                    qos1_id = Some(id);
                    Frame::publish_qos1(topic, b"p", "", arg & 0x80 != 0, id, false)
                } else {
                    Frame::publish(topic, b"p", "", arg & 0x80 != 0)
                }
            }
            5 if arg & 1 != 0 => Frame::pub_ack(arg as u16 >> 1),
            5 => Frame::empty(FrameType::Ping),
            6 => Frame::empty(FrameType::Disconnect),
            7 => {
                world.now += Duration::from_secs(arg as u64);
                for c in 0..CONNS {
                    let conn = &mut world.conns[c];
                    if conn.session.poll_timeout().is_some_and(|t| t <= world.now) {
                        let _ = conn.session.handle_timeout(world.now);
                        broker::release(&mut world.router, conn.subscriber.take());
                    }
                }
                world.drain();
                continue;
            }
            _ => {
                let raw: Vec<u8> = bytes.by_ref().take(arg % 16).collect();
                world.feed(index, &raw);
                world.drain();
                continue;
            }
        };
        world.feed(index, &frame.to_vec());
        let (published, acks) = world.drain();
        let publisher_refused = world.conns[index].session.is_closed();
        for (c, acks) in acks.iter().enumerate() {
            match qos1_id {
                // The publisher was open and stayed so: exactly its id, once.
                Some(id) if c == index && expected.is_some() && !publisher_refused => {
                    assert_eq!(acks, &[id], "conn {c}: PubAcks");
                }
                _ => assert!(acks.is_empty(), "conn {c}: PubAcks {acks:?} for nothing"),
            }
        }
        for (c, topics) in published.iter().enumerate() {
            match &expected {
                Some((topic, receivers)) if !publisher_refused => {
                    let want = usize::from(receivers.contains(&c));
                    let got = topics.iter().filter(|t| *t == topic).count();
                    assert_eq!(got, want, "conn {c}: deliveries of {topic} (receivers {receivers:?})");
                    assert_eq!(topics.len(), got, "conn {c}: other publishes {topics:?}");
                }
                _ => assert!(topics.is_empty(), "conn {c}: publishes {topics:?} from no publish"),
            }
        }
    }
});
