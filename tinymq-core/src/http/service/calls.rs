//! What each call does: [`execute`] hands a call its caller may make to
//! the function that serves it. Calls answered by a single expression (a
//! document, a file, a fixed reply) are answered in the dispatch itself.

use std::collections::{BTreeMap, HashSet};

use serde::Serialize;
use serde_json::Value;

use super::documents::{
    clients_document, crooks_document, log_document, peer_hosts_document, posters_document, resubscribe_document,
    stats_document,
};
use super::prometheus::metrics_text;
use super::status_page::status_page;
use super::{Context, HttpConfig, HttpEffects, HttpState, Reply, SinkKind, publish, stamp};
use crate::http::call::Call;
use crate::http::clients::HttpClientId;
use crate::http::json::{message_object, moustique_message_object};
use crate::http::response::{self, Response};
use crate::http::topic_search::TopicSearch;
use crate::http::ui::UiFile;
use crate::message::Message;
use crate::metrics::Figures;
use crate::router::{Delivery, NamespaceId, Router};
use crate::store::StoreOp;
use crate::topic::Filter;

/// Serves `call` in `namespace`, its caller authorized (see
/// [`super::serve`]). Other arguments as for [`super::handle`].
#[allow(clippy::too_many_arguments)]
pub(super) fn execute<S: Clone + SinkKind>(
    router: &mut Router<S>,
    state: &mut HttpState,
    config: &HttpConfig,
    call: Call,
    namespace: NamespaceId,
    context: Context,
    own_sink: S,
    client_sink: impl Fn(HttpClientId) -> S,
    figures: impl FnOnce() -> Figures,
) -> HttpEffects<S> {
    let unix = context.unix_time;
    match call {
        Call::Post { topic, message, from, updated_time } => {
            let message = stamp(topic, message, from, updated_time, context);
            post(router, state, config, namespace, message, unix)
        }
        Call::Publish { topic, payload, retain, from } => {
            let message = stamp(topic, payload, from, None, context);
            plain_publish(router, state, config, namespace, message, retain, unix)
        }
        Call::Subscribe { filter, client } => {
            subscribe(router, state, namespace, filter, &client, context, client_sink)
        }
        Call::Pickup { client } => pickup(state, namespace, &client, context),
        Call::PutVal { name, value, from, updated_time } => {
            put_val(router, namespace, stamp(name, value, from, updated_time, context))
        }
        Call::GetVal { topic } => get_val(router, state, namespace, &topic, false, context),
        Call::Value { topic } => get_val(router, state, namespace, &topic, true, context),
        Call::GetValsByRegex { pattern } => get_vals_by_regex(router, state, config, namespace, &pattern, context),
        Call::Values { filter } => values(router, namespace, &filter),
        Call::Version => moustique(env!("CARGO_PKG_VERSION"), context),
        Call::Stats { plain } => either(&stats_document(router, state, &figures(), unix), plain, context),
        Call::Clients { plain } => either(&clients_document(router, state, namespace), plain, context),
        Call::Topics => topics(router, namespace, context),
        Call::Posters => moustique(&posters_document(state, namespace, unix), context),
        Call::Crooks => moustique(&crooks_document(&figures().peers, &context), context),
        Call::PeerHosts => moustique(&peer_hosts_document(state, namespace), context),
        Call::Log => moustique(&log_document(state, namespace), context),
        Call::Index => HttpEffects::respond(Response::ui(UiFile::Page)),
        Call::UiFile(file) => HttpEffects::respond(Response::ui(file)),
        Call::Status => {
            let page = status_page(router, state, namespace, &figures(), unix);
            HttpEffects::respond(Response::with_body(response::HTML, page.into_bytes()))
        }
        Call::Events { filters } => events(router, namespace, filters, own_sink),
        Call::Health => HttpEffects::respond(Response::text(200, "ok")),
        Call::Metrics => HttpEffects::respond(Response::with_body(
            response::PROMETHEUS,
            metrics_text(router, state, &figures()).into_bytes(),
        )),
        Call::Preflight => HttpEffects::reply(Reply::Preflight),
    }
}

/// A document encoded the Moustique way, in the order the request came in.
fn moustique<S>(document: &(impl Serialize + ?Sized), context: Context) -> HttpEffects<S> {
    HttpEffects::respond(Response::moustique_json(document, context.encoding))
}

/// A document as plain JSON for the plain API (`plain`), else the
/// Moustique way.
fn either<S>(document: &(impl Serialize + ?Sized), plain: bool, context: Context) -> HttpEffects<S> {
    if plain { HttpEffects::respond(Response::json(document)) } else { moustique(document, context) }
}

/// Moustique `/POST`: publish, and store as the topic's value.
fn post<S: Clone + SinkKind>(
    router: &mut Router<S>,
    state: &mut HttpState,
    config: &HttpConfig,
    namespace: NamespaceId,
    message: Message,
    unix: u64,
) -> HttpEffects<S> {
    state.processed.record(unix);
    publish(router, state, config, namespace, message, true)
}

/// `POST /api/v1/publish`: publish, stored only with `retain`; 204.
fn plain_publish<S: Clone + SinkKind>(
    router: &mut Router<S>,
    state: &mut HttpState,
    config: &HttpConfig,
    namespace: NamespaceId,
    message: Message,
    retain: bool,
    unix: u64,
) -> HttpEffects<S> {
    state.processed.record(unix);
    let mut effects = publish(router, state, config, namespace, message, retain);
    effects.reply = Reply::Response(Response::no_content());
    effects
}

/// Moustique `/SUBSCRIBE`: registers the client if it is new, and gives
/// it `filter`; the client's record goes to the store when it changed.
fn subscribe<S: Clone>(
    router: &mut Router<S>,
    state: &mut HttpState,
    namespace: NamespaceId,
    filter: Filter,
    client: &str,
    context: Context,
    client_sink: impl Fn(HttpClientId) -> S,
) -> HttpEffects<S> {
    let unix = context.unix_time;
    let id = match state.clients.find(namespace, client) {
        Some(id) => id,
        None => {
            let registered = state.clients.register(namespace, client, context.now, unix, context.ip, |id| {
                router.add_subscriber(namespace, client_sink(id))
            });
            match registered {
                Some(id) => id,
                None => return HttpEffects::respond(Response::text(503, "too many HTTP clients")),
            }
        }
    };
    state.clients.touch(id, context.now, unix, context.ip);
    let mut effects = HttpEffects::respond(Response::ok());
    if state.clients.subscribe(id, filter.clone())
        && let Some(client) = state.clients.get(id)
    {
        router.subscribe(client.subscriber, filter);
        // The whole record again: a new client's first filter and a
        // known client's next one are the same write.
        effects.client_record = Some(StoreOp::PutHttpClient {
            namespace: router.namespace_name(namespace).to_string(),
            client: client.name.to_string(),
            first_seen: client.first_seen,
            filters: client.filters.iter().map(|f| f.as_str().to_owned()).collect(),
        });
    }
    effects
}

/// Moustique `/PICKUP`: the client's queued messages by filter, or the
/// resubscribe document for a client the broker does not know.
fn pickup<S>(state: &mut HttpState, namespace: NamespaceId, client: &str, context: Context) -> HttpEffects<S> {
    let unix = context.unix_time;
    state.pickups.record(unix);
    let Some(id) = state.clients.find(namespace, client) else {
        return moustique(&resubscribe_document(unix), context);
    };
    state.clients.touch(id, context.now, unix, context.ip);
    let picked_up = state.clients.get(id).map_or(0, |c| c.queued());
    let groups: BTreeMap<String, Vec<Value>> = state
        .clients
        .pickup(id)
        .into_iter()
        .map(|(filter, messages)| {
            let list = messages
                .iter()
                .map(|queued| moustique_message_object(queued.delivery.message(), &queued.subscribers))
                .collect();
            (filter.as_str().to_owned(), list)
        })
        .collect();
    HttpEffects { picked_up, ..moustique(&groups, context) }
}

/// Moustique `/PUTVAL`: store without publishing (an empty value deletes).
fn put_val<S: Clone>(router: &mut Router<S>, namespace: NamespaceId, message: Message) -> HttpEffects<S> {
    let delivery = Delivery::new(message);
    let topic = delivery.message().topic.clone();
    if delivery.message().payload.is_empty() {
        router.remove_value(namespace, &topic);
    } else {
        router.store(namespace, delivery.clone());
    }
    let mut effects = HttpEffects::respond(Response::ok());
    effects.stored = Some((router.namespace_name(namespace).clone(), delivery));
    effects
}

/// Moustique `/GETVAL`, or the plain API's `/api/v1/value` (`plain`): the
/// topic's stored value, or 404.
fn get_val<S: Clone>(
    router: &Router<S>,
    state: &mut HttpState,
    namespace: NamespaceId,
    topic: &str,
    plain: bool,
    context: Context,
) -> HttpEffects<S> {
    state.getvals.record(context.unix_time);
    let Some(value) = router.value(namespace, topic) else {
        return HttpEffects::respond(Response::text(404, format!("no value for {topic}")));
    };
    if plain {
        HttpEffects::respond(Response::json(&message_object(value.message())))
    } else {
        moustique(&moustique_message_object(value.message(), &[]), context)
    }
}

/// Moustique `/GETVALSBYREGEX`: the stored values whose topic matches
/// `pattern` anywhere, under bounds on the expression and the search.
fn get_vals_by_regex<S: Clone>(
    router: &Router<S>,
    state: &mut HttpState,
    config: &HttpConfig,
    namespace: NamespaceId,
    pattern: &str,
    context: Context,
) -> HttpEffects<S> {
    state.getvals.record(context.unix_time);
    if pattern.len() > config.max_regex_len {
        return HttpEffects::respond(Response::text(
            400,
            format!("regular expression over {} bytes", config.max_regex_len),
        ));
    }
    // Validated by regex, for its error messages; searched by a lazy
    // DFA whose work is bounded (topic_search.rs).
    if let Err(error) = regex::RegexBuilder::new(pattern)
        .size_limit(config.regex_size_limit)
        .dfa_size_limit(config.regex_size_limit)
        .build()
    {
        let text = error.to_string();
        let first_line = text.lines().last().unwrap_or("invalid regular expression").trim();
        return HttpEffects::respond(Response::text(400, format!("bad regular expression: {first_line}")));
    }
    let mut search = match TopicSearch::new(pattern, config.regex_size_limit) {
        Ok(search) => search,
        Err(text) => return HttpEffects::respond(Response::text(400, text)),
    };
    let mut matches = BTreeMap::new();
    // `$` topics are the broker's (`$SYS/...`), listed only when asked for by name, as MQTT does.
    for d in router.values(namespace).filter(|d| !d.message().topic.starts_with('$')) {
        match search.is_match(&d.message().topic) {
            Ok(true) => {
                matches.insert(&*d.message().topic, moustique_message_object(d.message(), &[]));
            }
            Ok(false) => {}
            Err(text) => return HttpEffects::respond(Response::text(400, text)),
        }
    }
    moustique(&matches, context)
}

/// `GET /api/v1/values`: the stored values matching `filter`.
fn values<S: Clone>(router: &Router<S>, namespace: NamespaceId, filter: &Filter) -> HttpEffects<S> {
    let list: Vec<Value> = router.values_matching(namespace, filter).map(|d| message_object(d.message())).collect();
    HttpEffects::respond(Response::json(&list))
}

/// Moustique `/TOPICS`: the topics of the stored values, the broker's own
/// `$` topics left out.
fn topics<S: Clone>(router: &Router<S>, namespace: NamespaceId, context: Context) -> HttpEffects<S> {
    let topics: Vec<&str> =
        router.values(namespace).filter(|d| !d.message().topic.starts_with('$')).map(|d| &*d.message().topic).collect();
    moustique(&topics, context)
}

/// `GET /api/v1/events`: the connection becomes a subscriber through its
/// own sink, and gets the stored values matching its filters first (each
/// once, though several filters match it).
fn events<S: Clone>(
    router: &mut Router<S>,
    namespace: NamespaceId,
    filters: Vec<Filter>,
    own_sink: S,
) -> HttpEffects<S> {
    let subscriber = router.add_subscriber(namespace, own_sink);
    let mut seen = HashSet::new();
    let mut retained = Vec::new();
    for filter in &filters {
        for value in router.values_matching(namespace, filter) {
            if seen.insert(value.message().topic.clone()) {
                retained.push(value.clone());
            }
        }
    }
    for filter in filters {
        router.subscribe(subscriber, filter);
    }
    HttpEffects::reply(Reply::Events { subscriber, retained })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Identity;
    use crate::http::encoding::{Encoding, encode_value};
    use crate::http::service::test_broker::{Broker, TestSink, json, subscribe_request};
    use crate::http::service::{HttpConfig, RESUBSCRIBE_TOPIC};
    use crate::message::Message;
    use crate::topic::{TopicLimits, TopicName};
    use serde_json::json;

    #[test]
    fn an_unknown_client_is_told_to_resubscribe() {
        let mut broker = Broker::new(HttpConfig::default());
        let picked = json(&broker.moustique("PICKUP", &[("client", "stranger")]).1);
        assert_eq!(picked[RESUBSCRIBE_TOPIC][0]["topic"], RESUBSCRIBE_TOPIC);
    }

    #[test]
    fn putval_stores_without_publishing_and_getval_404s_without_a_value() {
        let mut broker = Broker::new(HttpConfig::default());
        broker.moustique("SUBSCRIBE", &[("topic", "#"), ("client", "c")]);
        assert_eq!(broker.moustique("GETVAL", &[("topic", "v")]).0, 404);
        let (status, _) = broker.moustique("PUTVAL", &[("valname", "v"), ("val", "42"), ("updated_time", "77")]);
        assert_eq!(status, 200);
        let value = json(&broker.moustique("GETVAL", &[("topic", "v")]).1);
        assert_eq!((value["message"].as_str(), value["updated_time"].as_u64()), (Some("42"), Some(77)));
        assert_eq!(json(&broker.moustique("PICKUP", &[("client", "c")]).1), json("{}"), "PUTVAL publishes nothing");
    }

    #[test]
    fn getvalsbyregex_matches_unanchored_and_refuses_huge_expressions() {
        let mut broker = Broker::new(HttpConfig { regex_size_limit: 10_000, ..Default::default() });
        for topic in ["/a/temperature", "/b/humidity", "/c/temperature"] {
            broker.moustique("PUTVAL", &[("valname", topic), ("val", "1")]);
        }
        let found = json(&broker.moustique("GETVALSBYREGEX", &[("topic", "temp")]).1);
        let mut topics: Vec<&String> = found.as_object().unwrap().keys().collect();
        topics.sort();
        assert_eq!(topics, ["/a/temperature", "/c/temperature"]);
        assert_eq!(broker.moustique("GETVALSBYREGEX", &[("topic", "(")]).0, 400);
        assert_eq!(broker.moustique("GETVALSBYREGEX", &[("topic", "a{1000}{1000}")]).0, 400, "over the size limit");
        assert_eq!(broker.moustique("GETVALSBYREGEX", &[("topic", &"a".repeat(2000))]).0, 400, "too long");
    }

    #[test]
    fn getvalsbyregex_refuses_a_search_too_costly_for_the_stored_topics() {
        // regex::Regex spent 41 s of the event loop on this (release build),
        // falling back to its PikeVM over 4 MB of topics.
        let mut broker = Broker::new(HttpConfig::default());
        for i in 0..1000 {
            let topic = format!("{}/{i}", "a".repeat(3994));
            broker.moustique("PUTVAL", &[("valname", &topic), ("val", "1")]);
        }
        let (status, body) = broker.moustique("GETVALSBYREGEX", &[("topic", "(?:a{1,30}){1,30}b")]);
        assert_eq!((status, body.trim()), (400, "regular expression too costly to search the stored topics"));
        let found = json(&broker.moustique("GETVALSBYREGEX", &[("topic", "/99[0-9]$")]).1);
        assert_eq!(found.as_object().unwrap().len(), 10, "an ordinary search of the same topics");
    }

    #[test]
    fn an_event_stream_subscribes_its_own_sink_and_gets_stored_values_first() {
        let mut broker = Broker::new(HttpConfig::default());
        broker.moustique("POST", &[("topic", "x/1"), ("message", "old")]);
        let effects = broker.request("GET /api/v1/events?topic=x/%2B&topic=x/1 HTTP/1.1\r\n\r\n");
        let Reply::Events { subscriber, retained } = effects.reply else { panic!("{:?}", effects.reply) };
        assert_eq!(retained.len(), 1, "one stored value, though two filters match it");
        assert_eq!(broker.router.sink(subscriber), Some(&TestSink::Conn("stream")));
        let publish = broker.request("POST /api/v1/publish?topic=x/2 HTTP/1.1\r\nContent-Length: 3\r\n\r\nnew");
        assert_eq!(publish.reply.status(), 204);
        assert_eq!(publish.receivers, [TestSink::Conn("stream")]);
        assert!(publish.stored.is_none(), "no retain, no stored value");
    }

    fn subscribe_record(effects: &HttpEffects<TestSink>) -> Option<(String, u64, Vec<String>)> {
        match &effects.client_record {
            Some(StoreOp::PutHttpClient { client, first_seen, filters, .. }) => {
                Some((client.clone(), *first_seen, filters.clone()))
            }
            None => None,
            Some(other) => panic!("not a client record: {other:?}"),
        }
    }

    #[test]
    fn subscribe_writes_the_client_record_only_when_it_changes() {
        let mut broker = Broker::new(HttpConfig::default());
        let first = broker.request(&subscribe_request("a/+", "c"));
        assert_eq!(subscribe_record(&first), Some(("c".into(), 2_000, vec!["a/+".into()])), "a new client");
        let second = broker.request(&subscribe_request("b/#", "c"));
        assert_eq!(subscribe_record(&second), Some(("c".into(), 2_000, vec!["a/+".into(), "b/#".into()])));
        let again = broker.request(&subscribe_request("a/+", "c"));
        assert_eq!((again.reply.status(), subscribe_record(&again)), (200, None), "a filter it holds: no write");
        let client = encode_value(b"c", Encoding::Current).replace('=', "%3D");
        let pickup = broker.request(&format!("GET /PICKUP?client={client} HTTP/1.1\r\n\r\n"));
        assert!(pickup.client_record.is_none() && pickup.stored.is_none(), "PICKUP writes nothing");
    }

    #[test]
    fn the_web_ui_is_the_page_at_root_and_clients_come_as_plain_json() {
        let mut broker = Broker::new(HttpConfig::default());
        let Reply::Response(page) = broker.request("GET / HTTP/1.1\r\n\r\n").reply else { panic!("a response") };
        assert_eq!((page.status, page.content_type, page.headers), (200, response::HTML, UiFile::Page.headers()));
        assert!(String::from_utf8_lossy(&page.body).contains("src=\"/ui/app.js\""));
        let Reply::Response(status) = broker.request("GET /STATUS HTTP/1.1\r\n\r\n").reply else { panic!() };
        assert!(String::from_utf8_lossy(&status.body).contains("<h1>tinymq"), "/STATUS stays the status page");

        broker.moustique("SUBSCRIBE", &[("topic", "/s/#"), ("client", "dashboard")]);
        let session = broker.router.add_subscriber(NamespaceId::PUBLIC, TestSink::Conn("binary"));
        let _ = broker.router.claim_client_id(session, "sensor-1");
        let (status, body) = broker.get_as("/api/v1/clients", &Ok(Identity::Anonymous));
        let clients = json(&body);
        assert_eq!(status, 200);
        assert_eq!(clients, json(&broker.moustique("CLIENTS", &[]).1), "CLIENTS' document, not encoded");
        assert_eq!(
            (clients[0]["Name"].as_str(), clients[0]["Transport"].as_str(), &clients[0]["Subscriptions"]),
            (Some("dashboard"), Some("http"), &json(r#"["/s/#"]"#))
        );
        assert_eq!((clients[1]["Name"].as_str(), clients[1]["Transport"].as_str()), (Some("sensor-1"), Some("tcp")));
    }

    #[test]
    fn dollar_topics_are_left_out_of_lists_and_refused_to_publishers() {
        let mut broker = Broker::new(HttpConfig::default());
        broker.moustique("POST", &[("topic", "/a"), ("message", "1"), ("from", "t")]);
        let sys = TopicName::new("$SYS/broker/uptime", &TopicLimits::default()).unwrap();
        let delivery = Delivery::new(Message {
            topic: sys.as_str().into(),
            payload: b"5"[..].into(),
            from: "$SYS".into(),
            updated_time: 1,
            ip: None,
        });
        let _ = broker.router.publish(NamespaceId::PUBLIC, sys, &delivery, true, &mut Vec::new());
        assert_eq!(broker.router.value_count(), 1, "STATS' values leave out the broker's own");
        let topics = json(&broker.moustique("TOPICS", &[]).1);
        assert_eq!(topics, json!(["/a"]));
        let found = json(&broker.moustique("GETVALSBYREGEX", &[("topic", ".*")]).1);
        assert_eq!(found.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()), Some(vec!["/a".to_owned()]));
        let (status, _) = broker.moustique("POST", &[("topic", "$SYS/broker/uptime"), ("message", "0"), ("from", "t")]);
        assert_eq!(status, 400);
    }
}
