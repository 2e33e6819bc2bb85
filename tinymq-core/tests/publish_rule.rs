//! One publish rule for every transport, on the core's `Broker`, a virtual
//! clock and no sockets: a publish from a binary session, a Moustique
//! `/POST`, a plain `/api/v1/publish` and the broker's own `publish` (what
//! in-process clients and the bridge call) reaches every kind of sink alike (binary
//! connections, Moustique PICKUP queues, event streams, in-process queues),
//! and a retained publish with an empty payload means the same everywhere:
//! the value is deleted and the empty message is delivered.

use std::sync::Arc;
use std::time::Instant;

use tinymq_core::auth::Identity;
use tinymq_core::broker::{Broker, HttpInput, Origin, Rules};
use tinymq_core::http::encoding::{Encoding, encode_value};
use tinymq_core::http::request::{HttpLimits, Parsed, parse_head};
use tinymq_core::http::service::{self, Context, HttpEffects, Reply};
use tinymq_core::metrics::Figures;
use tinymq_core::{
    Delivery, Filter, Frame, Message, NamespaceId, Request, Session, SessionConfig, Step, SubscriberId, TopicLimits,
    TopicName,
};

mod support;
use support::Sink;

/// What each kind of sink received, as (topic, payload) pairs.
#[derive(Debug, Default, PartialEq, Eq)]
struct Received {
    conn: Vec<(String, String)>,
    pickup: Vec<(String, String)>,
    stream: Vec<(String, String)>,
    local: Vec<(String, String)>,
}

/// The core's broker with one subscriber of each kind, and a connected
/// binary publisher: the harness does what the event loop does.
struct Harness {
    now: Instant,
    broker: Broker<Sink>,
    publisher: Session,
    publisher_id: Option<SubscriberId>,
}

fn text(delivery: &Delivery) -> (String, String) {
    let message = delivery.message();
    (message.topic.to_string(), String::from_utf8_lossy(&message.payload).into_owned())
}

impl Harness {
    /// A broker with one subscriber of each kind on `filter`, and a
    /// connected binary publisher.
    #[allow(clippy::disallowed_methods)]
    fn with_subscribers(filter: &str) -> Self {
        let now = Instant::now();
        let mut harness = Harness {
            now,
            broker: Broker::new(Rules::default(), 1_700_000_000),
            publisher: Session::new(now, &SessionConfig::default()),
            publisher_id: None,
        };
        let filter = Filter::new(filter, &TopicLimits::default()).unwrap();
        for sink in [Sink::Conn("conn"), Sink::Stream("stream"), Sink::Local("local")] {
            let id = harness.broker.register(NamespaceId::PUBLIC, sink, "", ORIGIN).id;
            assert!(harness.broker.subscribe(id, filter.clone()).is_empty());
        }
        let (status, _) = harness.moustique("SUBSCRIBE", &[("topic", filter.as_str()), ("client", "m")]);
        assert_eq!(status, 200);
        // The binary publisher connects through the session and the broker.
        let connect = Frame::connect("pub", b"").to_vec();
        let Ok(Step::Request { request: Request::Connect { client_id, .. }, .. }) =
            harness.publisher.handle_input(now, &connect)
        else {
            panic!("a Connect")
        };
        let client_id = client_id.to_owned();
        let effects = harness.broker.handle_connect(
            &mut harness.publisher,
            Sink::Conn("publisher"),
            &client_id,
            Ok(Identity::Anonymous),
            now,
            ORIGIN,
        );
        harness.publisher_id = Some(effects.connected.expect("connected"));
        harness
    }

    /// Serves a raw HTTP request as the event loop does.
    fn http(&mut self, raw: &str) -> HttpEffects<Sink> {
        let Ok(Parsed::Complete { head, head_len }) = parse_head(raw.as_bytes(), &HttpLimits::default()) else {
            panic!("not a whole request: {raw}")
        };
        let request = service::parse(&head, &raw.as_bytes()[head_len..], &self.broker.rules().http).unwrap();
        let context = Context { now: self.now, unix_time: 2_000, ip: None, encoding: request.encoding };
        let input = HttpInput::Call(request.call, Ok(Identity::Anonymous));
        self.broker.handle_http(input, context, Sink::Stream("requester"), Sink::Http, Figures::default)
    }

    fn moustique(&mut self, path: &str, params: &[(&str, &str)]) -> (u16, String) {
        let body = params
            .iter()
            .map(|(name, value)| {
                let encoded = encode_value(value.as_bytes(), Encoding::Current);
                format!("{name}={}", encoded.replace('+', "%2B").replace('/', "%2F").replace('=', "%3D"))
            })
            .collect::<Vec<_>>()
            .join("&");
        let effects = self.http(&format!("POST /{path} HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}", body.len()));
        let Reply::Response(response) = effects.reply else { panic!("not a response") };
        let decoded = tinymq_core::http::encoding::decode_value(&response.body, Encoding::Current);
        (response.status, String::from_utf8(decoded).unwrap())
    }

    /// What a publish's receivers got, with the Moustique queue picked up.
    fn receive(&mut self, delivery: Option<Arc<Delivery>>, receivers: &[Sink]) -> Received {
        let mut got = Received::default();
        if let Some(delivery) = delivery {
            for sink in receivers {
                match sink {
                    Sink::Conn(_) => got.conn.push(text(&delivery)),
                    Sink::Stream(_) => got.stream.push(text(&delivery)),
                    Sink::Local(_) => got.local.push(text(&delivery)),
                    Sink::Http(_) => panic!("Moustique clients are queued by the publish, not returned"),
                }
            }
        }
        let (_, picked) = self.moustique("PICKUP", &[("client", "m")]);
        let picked: serde_json::Value = serde_json::from_str(&picked).unwrap();
        for messages in picked.as_object().unwrap().values() {
            for message in messages.as_array().unwrap() {
                let field = |name: &str| message[name].as_str().unwrap().to_owned();
                got.pickup.push((field("topic"), field("message")));
            }
        }
        got
    }

    fn binary_publish(&mut self, topic: &str, payload: &str, retain: bool) -> Received {
        let frame = Frame::publish(topic, payload.as_bytes(), "", retain).to_vec();
        let Ok(Step::Request { request, .. }) = self.publisher.handle_input(self.now, &frame) else { panic!() };
        let origin = Origin { unix_time: 3, ip: None };
        let effects = self.broker.handle_request(
            &mut self.publisher,
            self.publisher_id,
            Sink::Conn("publisher"),
            request,
            origin,
        );
        assert_eq!(effects.store.is_some(), retain, "a retained publish is written to the store");
        self.receive(effects.delivery, &effects.receivers)
    }

    fn moustique_post(&mut self, topic: &str, payload: &str) -> Received {
        let body = [("topic", topic), ("message", payload)]
            .iter()
            .map(|(n, v)| format!("{n}={}", encode_value(v.as_bytes(), Encoding::Current).replace('=', "%3D")))
            .collect::<Vec<_>>()
            .join("&");
        let effects = self.http(&format!("POST /POST HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}", body.len()));
        assert_eq!(effects.reply.status(), 200);
        self.receive(effects.delivery, &effects.receivers)
    }

    fn plain_publish(&mut self, topic: &str, payload: &str, retain: bool) -> Received {
        let retain = if retain { "&retain=1" } else { "" };
        let raw = format!(
            "POST /api/v1/publish?topic={topic}{retain} HTTP/1.1\r\nContent-Length: {}\r\n\r\n{payload}",
            payload.len()
        );
        let effects = self.http(&raw);
        assert_eq!(effects.reply.status(), 204);
        self.receive(effects.delivery, &effects.receivers)
    }

    /// The broker's publish, as in-process clients and the bridge call it.
    fn broker_publish(&mut self, topic: &str, payload: &str, retain: bool) -> Received {
        let delivery = Delivery::new(Message {
            topic: topic.into(),
            payload: payload.as_bytes().into(),
            from: "local".into(),
            updated_time: 4,
            ip: None,
        });
        let name = TopicName::new(topic, &TopicLimits::default()).unwrap();
        let published = self.broker.publish(NamespaceId::PUBLIC, name, &delivery, retain);
        assert_eq!(published.store.is_some(), retain);
        self.receive(Some(delivery), &published.receivers)
    }

    fn value(&self, topic: &str) -> Option<String> {
        self.broker.router().value(NamespaceId::PUBLIC, topic).map(|d| text(d).1)
    }
}

const ORIGIN: Origin = Origin { unix_time: 1, ip: None };

fn everywhere(topic: &str, payload: &str) -> Received {
    let pair = vec![(topic.to_owned(), payload.to_owned())];
    Received { conn: pair.clone(), pickup: pair.clone(), stream: pair.clone(), local: pair }
}

#[test]
fn a_publish_from_every_transport_reaches_every_kind_of_sink() {
    let mut broker = Harness::with_subscribers("s/#");
    assert_eq!(broker.binary_publish("s/binary", "1", false), everywhere("s/binary", "1"));
    assert_eq!(broker.moustique_post("s/post", "2"), everywhere("s/post", "2"));
    assert_eq!(broker.plain_publish("s/plain", "3", false), everywhere("s/plain", "3"));
    assert_eq!(broker.broker_publish("s/local", "4", false), everywhere("s/local", "4"));
    // A topic no filter matches reaches no one, whoever publishes it.
    assert_eq!(broker.binary_publish("other", "x", false), Received::default());
    assert_eq!(broker.moustique_post("other", "x"), Received::default());
}

#[test]
fn an_empty_retained_publish_deletes_the_value_and_is_delivered_on_every_transport() {
    type Publish = fn(&mut Harness, &str, &str, bool) -> Received;
    let transports: [(&str, Publish); 4] = [
        ("binary", Harness::binary_publish),
        // A Moustique POST always stores the value.
        ("moustique", |b, topic, payload, _| b.moustique_post(topic, payload)),
        ("plain", Harness::plain_publish),
        ("in-process", Harness::broker_publish),
    ];
    for (name, publish) in transports {
        let mut broker = Harness::with_subscribers("s/#");
        assert_eq!(publish(&mut broker, "s/v", "21.5", true), everywhere("s/v", "21.5"), "{name}");
        assert_eq!(broker.value("s/v").as_deref(), Some("21.5"), "{name} stores");
        assert_eq!(publish(&mut broker, "s/v", "", true), everywhere("s/v", ""), "{name}: delivered empty");
        assert_eq!(broker.value("s/v"), None, "{name}: the value is gone");
    }
}
