//! The JSON documents of the statistics calls: STATS, CLIENTS, POSTERS,
//! CROOKS, PEERHOSTS, LOG, and PICKUP's answer to an unknown client.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use serde_json::{Map, Value, json};

use super::state::{LOG_SHOWN, POSTER_WINDOW_SECS, PeerHost, Poster};
use super::{Context, HttpState, RESUBSCRIBE_TOPIC, SinkKind};
use crate::auth::PeerReport;
use crate::http::json::{message_object, moustique_message_object, nice_datetime};
use crate::message::Message;
use crate::metrics::Figures;
use crate::router::{NamespaceId, Router};

/// PICKUP's answer to a client the broker does not know.
pub(super) fn resubscribe_document(unix_time: u64) -> Value {
    let message = Message {
        topic: RESUBSCRIBE_TOPIC.into(),
        payload: b"resubscribe"[..].into(),
        from: "tinymq".into(),
        updated_time: unix_time,
        ip: None,
    };
    json!({ RESUBSCRIBE_TOPIC: [message_object(&message)] })
}

pub(super) fn stats_document<S: Clone>(router: &Router<S>, state: &HttpState, figures: &Figures, unix: u64) -> Value {
    let uptime = figures.uptime_secs;
    let posters = state.posters.values().filter(|p| unix.saturating_sub(p.last_unix) < POSTER_WINDOW_SECS).count();
    let connections: Map<String, Value> =
        figures.connections.iter().map(|&(name, n)| (name.to_owned(), Value::from(n))).collect();
    let memory_usage =
        figures.rss_bytes.map_or_else(|| "N/A".to_owned(), |bytes| format!("{:.1} MB", bytes as f64 / 1e6));
    // Milliseconds, as Moustique's handler timing.
    let average_request_time = state.serve_nanos as f64 / 1e6 / state.served.max(1) as f64;
    json!({
        "started": nice_datetime(state.started_unix),
        "memory_usage": memory_usage,
        "goroutines": figures.threads.unwrap_or(0),
        "average_request_time": average_request_time,
        "started_unix": state.started_unix,
        "uptime_seconds": uptime,
        "version": env!("CARGO_PKG_VERSION"),
        "subscription_count": router.subscription_count(),
        "subscribers": router.subscriber_count(),
        "values": router.value_count(),
        "clients": {
            "subscribers": state.clients.len(),
            "posters": posters,
            "queued_messages": state.clients.iter().map(|c| c.queued()).sum::<usize>(),
            "queue_dropped_messages": state.clients.dropped_total(),
            "expired": state.clients.expired_total(),
        },
        "requests": {
            "total": state.requests.total,
            "per_second": state.requests.json(unix, uptime)["per_second"],
            "per_second_last_minute": state.requests.json(unix, uptime)["per_second_last_minute"],
            "pickups": state.pickups.json(unix, uptime),
            "processed": state.processed.json(unix, uptime),
            "getvals": state.getvals.json(unix, uptime),
        },
        "connections": connections,
        "connections_total": figures.connections_total,
        "refused_connections": figures.refused_connections,
        "refused_peers": figures.refused_peers,
        "throttled_requests": figures.throttled_requests,
        "throttled_peers": figures.throttled_peers,
        "tls_handshake_failures": figures.tls_handshake_failures,
        "messages_in": figures.messages_in,
        "messages_out": figures.messages_out,
        "bytes_in": figures.bytes_in,
        "bytes_out": figures.bytes_out,
        "slow_consumer_drops": figures.slow_consumer_drops,
        "local_queue_drops": figures.local_queue_drops,
        "store_writes": figures.store_writes,
        "store_committed_writes": figures.store_committed_writes,
        "store_records_written": figures.store_records_written,
        "store_commits": figures.store_commits,
        "store_failed_commits": figures.store_failed_commits,
        "store_failures": figures.store_failures,
        "store_pending": figures.store_pending,
        "store_error": figures.store_error,
        // The figures `/metrics` adds, under the same names.
        "deliveries": figures.messages_out,
        "dropped": {
            "slow_consumer": figures.slow_consumer_drops,
            "queue_overflow": state.clients.dropped_total(),
            "local_queue": figures.local_queue_drops,
        },
        "disconnects": figures.disconnects.iter().map(|&(reason, n)| (reason.to_owned(), Value::from(n))).collect::<Map<String, Value>>(),
        "store_commit_seconds": {
            "count": figures.store_commit_seconds.count,
            "sum": figures.store_commit_seconds.sum_seconds(),
        },
        "http_responses": state.statuses.iter().map(|(status, n)| (status.to_string(), Value::from(*n))).collect::<Map<String, Value>>(),
    })
}

pub(super) fn clients_document<S: Clone + SinkKind>(
    router: &Router<S>,
    state: &HttpState,
    namespace: NamespaceId,
) -> Value {
    let mut list: Vec<Value> = state
        .clients
        .iter()
        .filter(|c| c.namespace == namespace)
        .map(|c| {
            json!({
                "Name": &*c.name,
                "FirstSeen": c.first_seen,
                "FirstSeenNiceDatetime": nice_datetime(c.first_seen),
                "LatestPickup": c.latest_pickup,
                "LatestPickupNiceDatetime": nice_datetime(c.latest_pickup),
                "LatestSystemPickup": c.latest_pickup,
                "RequestCounter": c.requests,
                "IP": c.ip.map(|ip| ip.to_string()).unwrap_or_default(),
                "Transport": "http",
                "Subscriptions": c.filters.iter().map(|f| f.as_str()).collect::<Vec<_>>(),
                "Queued": c.queued(),
            })
        })
        .collect();
    let mut sessions: Vec<_> = router.clients(namespace).collect();
    sessions.sort_by(|a, b| a.client_id.cmp(b.client_id));
    // Connected subscribers have no pickups and no request count: those
    // fields are null, so readers of CLIENTS find every key.
    list.extend(sessions.into_iter().map(|entry| {
        json!({
            "Name": &**entry.client_id,
            "FirstSeen": entry.since,
            "FirstSeenNiceDatetime": nice_datetime(entry.since),
            "LatestPickup": null,
            "LatestPickupNiceDatetime": null,
            "LatestSystemPickup": null,
            "RequestCounter": null,
            "IP": entry.ip.map(|ip| ip.to_string()).unwrap_or_default(),
            "Transport": entry.sink.transport(),
        })
    }));
    Value::Array(list)
}

/// POSTERS: Moustique's list of publishers heard from in the last hour,
/// newest first, each with its latest post overall and per topic.
pub(super) fn posters_document(state: &HttpState, namespace: NamespaceId, unix: u64) -> Value {
    let mut posters: Vec<(&Arc<str>, &Poster)> = state
        .posters
        .iter()
        .filter(|((ns, _), p)| *ns == namespace && unix.saturating_sub(p.last_unix) < POSTER_WINDOW_SECS)
        .map(|((_, name), p)| (name, p))
        .collect();
    posters.sort_by(|a, b| b.1.last_unix.cmp(&a.1.last_unix).then_with(|| a.0.cmp(b.0)));
    let list = posters
        .into_iter()
        .map(|(name, p)| {
            let latest = p.latest.message();
            let by_topic: Map<String, Value> = p
                .by_topic
                .iter()
                .map(|d| (d.message().topic.to_string(), moustique_message_object(d.message(), &[])))
                .collect();
            json!({
                "Name": &**name,
                "latest_posts_by_topic": by_topic,
                "latest_post": moustique_message_object(latest, &[]),
                "IP": latest.ip.map(|ip| ip.to_string()).unwrap_or_default(),
                "FirstSeen": p.first_unix,
                "FirstSeenNiceDatetime": nice_datetime(p.first_unix),
                "LatestPostTime": p.last_unix,
                "LatestPostNiceDatetime": nice_datetime(p.last_unix),
                "MessageCount": p.count,
            })
        })
        .collect();
    Value::Array(list)
}

/// CROOKS: Moustique's list of peers that made bad requests, with ours
/// added: why (`Reason`) and for how long more they are refused.
pub(super) fn crooks_document(peers: &[PeerReport], context: &Context) -> Value {
    // The budgets keep monotonic times; shown as Unix seconds.
    let unix = |at: Instant| context.unix_time.saturating_sub(context.now.saturating_duration_since(at).as_secs());
    let list = peers
        .iter()
        .map(|peer| {
            let (first, last) = (unix(peer.first), unix(peer.last));
            let banned = peer.throttled_since.map(unix);
            json!({
                "IP": peer.peer,
                "Attempts": peer.faults,
                "FirstSeen": first,
                "FirstSeenNiceDatetime": nice_datetime(first),
                "LastSeen": last,
                "LastSeenNiceDatetime": nice_datetime(last),
                "BannedAt": banned.unwrap_or(0),
                "BannedAtNiceDatetime": banned.map(nice_datetime).unwrap_or_default(),
                "IsBanned": banned.is_some(),
                "Reason": peer.last_fault.text(),
                "RetryAfterSeconds": peer.retry_after.as_secs_f64().ceil() as u64,
            })
        })
        .collect();
    Value::Array(list)
}

/// PEERHOSTS: the addresses that made requests to the namespace, most
/// recent first.
pub(super) fn peer_hosts_document(state: &HttpState, namespace: NamespaceId) -> Value {
    let mut hosts: Vec<(&IpAddr, &PeerHost)> =
        state.peer_hosts.iter().filter(|((ns, _), _)| *ns == namespace).map(|((_, ip), h)| (ip, h)).collect();
    hosts.sort_by(|a, b| b.1.last_unix.cmp(&a.1.last_unix).then_with(|| a.0.cmp(b.0)));
    let list = hosts
        .into_iter()
        .map(|(ip, host)| {
            json!({
                "IP": ip.to_string(),
                "FirstSeen": host.first_unix,
                "FirstSeenNiceDatetime": nice_datetime(host.first_unix),
                "LastSeen": host.last_unix,
                "LastSeenNiceDatetime": nice_datetime(host.last_unix),
                "RequestCounter": host.requests,
            })
        })
        .collect();
    Value::Array(list)
}

/// LOG: the namespace's latest Moustique requests, oldest first, in
/// Moustique's `{"lines": [...], "total": N}`.
pub(super) fn log_document(state: &HttpState, namespace: NamespaceId) -> Value {
    let mut lines: Vec<String> = state
        .log
        .iter()
        .rev()
        .filter(|line| line.namespace == namespace)
        .take(LOG_SHOWN)
        .map(|line| {
            let ip = line.ip.map(|ip| ip.to_string()).unwrap_or_else(|| "-".to_owned());
            format!("{} {ip} {}", nice_datetime(line.unix), line.text)
        })
        .collect();
    lines.reverse();
    json!({ "lines": lines, "total": state.log_total.get(&namespace).copied().unwrap_or(0) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Identity;
    use crate::http::call::Call;
    use crate::http::encoding::{Encoding, decode_value};
    use crate::http::response;
    use crate::http::service::test_broker::{Broker, TestSink, busy_figures, json};
    use crate::http::service::{HttpConfig, Reply, serve};

    use crate::topic::{Filter, TopicLimits};
    use std::time::Duration;

    #[test]
    fn moustique_documents_have_moustiques_shapes() {
        let mut broker = Broker::new(HttpConfig::default());
        for client in ["c1", "c2"] {
            assert_eq!(broker.moustique("SUBSCRIBE", &[("topic", "/s/#"), ("client", client)]).0, 200);
        }
        broker.moustique("POST", &[("topic", "/s/a"), ("message", "1"), ("from", "app")]);
        broker.moustique("POST", &[("topic", "/s/b"), ("message", "2"), ("from", "app")]);
        let picked = json(&broker.moustique("PICKUP", &[("client", "c1")]).1);
        assert_eq!(picked["/s/#"][0]["subscribers"], json!({"c1": true, "c2": true}), "{picked}");
        assert_eq!(picked["/s/#"][1]["message"], "2");
        let value = json(&broker.moustique("GETVAL", &[("topic", "/s/a")]).1);
        assert_eq!(value["subscribers"], json!({}), "a stored value was queued for no one");

        let posters = json(&broker.moustique("POSTERS", &[]).1);
        assert_eq!(posters.as_array().map(Vec::len), Some(1), "{posters}");
        let app = &posters[0];
        assert_eq!(
            (&app["Name"], &app["MessageCount"], &app["LatestPostTime"]),
            (&json!("app"), &json!(2), &json!(2_000))
        );
        assert_eq!(app["latest_post"]["topic"], "/s/b");
        assert_eq!(app["latest_posts_by_topic"]["/s/a"]["message"], "1");
        assert_eq!(app["FirstSeenNiceDatetime"], nice_datetime(2_000));

        let clients = json(&broker.moustique("CLIENTS", &[]).1);
        for key in [
            "Name",
            "FirstSeen",
            "FirstSeenNiceDatetime",
            "LatestPickup",
            "LatestPickupNiceDatetime",
            "LatestSystemPickup",
            "RequestCounter",
            "IP",
        ] {
            assert!(clients[0].get(key).is_some(), "{key} in {clients}");
        }
        let stats = json(&broker.moustique("STATS", &[]).1);
        assert_eq!(stats["memory_usage"], "N/A", "the shell told no figure");
        assert!(stats["average_request_time"].is_f64() && stats["goroutines"].is_u64(), "{stats}");

        let log = json(&broker.moustique("LOG", &[]).1);
        let lines: Vec<&str> = log["lines"].as_array().unwrap().iter().map(|l| l.as_str().unwrap()).collect();
        assert!(lines.contains(&"1970-01-01 00:33:20 - /POST /s/a from app 200"), "{log}");
        assert!(lines.iter().any(|l| l.ends_with("/SUBSCRIBE /s/# by c2 200")), "{log}");
        assert_eq!(log["total"], lines.len(), "nine calls before; LOG is logged once answered");
    }

    #[test]
    fn crooks_and_peer_hosts_say_who_when_and_why() {
        let mut broker = Broker::new(HttpConfig::default());
        let now = broker.now;
        let peer = PeerReport {
            peer: "192.0.2.9".into(),
            faults: 21,
            last_fault: crate::auth::Fault::WrongCredentials,
            first: now - Duration::from_secs(60),
            last: now - Duration::from_secs(1),
            throttled_since: Some(now - Duration::from_secs(2)),
            retry_after: Duration::from_millis(2500),
        };
        let figures = || Figures { peers: vec![peer.clone()], ..Figures::default() };
        let ip: IpAddr = "198.51.100.7".parse().unwrap();
        let context = Context { now, unix_time: 2_000, ip: Some(ip), encoding: Encoding::Legacy };
        let serve_call = |broker: &mut Broker, call: Call| {
            let effects = serve(
                &mut broker.router,
                &mut broker.state,
                &broker.config,
                call,
                Ok(Identity::Anonymous),
                context,
                TestSink::Conn("x"),
                TestSink::Http,
                figures,
            );
            let Reply::Response(response) = effects.reply else { panic!("not a response") };
            json(&String::from_utf8(decode_value(&response.body, Encoding::Legacy)).unwrap())
        };
        let crooks = serve_call(&mut broker, Call::Crooks);
        assert_eq!(
            crooks,
            json!([{"IP": "192.0.2.9", "Attempts": 21, "FirstSeen": 1_940, "FirstSeenNiceDatetime": nice_datetime(1_940),
                    "LastSeen": 1_999, "LastSeenNiceDatetime": nice_datetime(1_999), "BannedAt": 1_998,
                    "BannedAtNiceDatetime": nice_datetime(1_998), "IsBanned": true, "Reason": "wrong credentials",
                    "RetryAfterSeconds": 3}]),
            "answered in the legacy order the request came in"
        );
        let hosts = serve_call(&mut broker, Call::PeerHosts);
        assert_eq!(hosts[0]["IP"], "198.51.100.7");
        assert_eq!(hosts[0]["RequestCounter"], 1, "the CROOKS call; this one counts once answered: {hosts}");
    }

    #[test]
    fn stats_keep_moustique_keys_and_count_requests() {
        let mut broker = Broker::new(HttpConfig::default());
        broker.moustique("GETVAL", &[("topic", "nothing")]);
        let stats = json(&broker.moustique("STATS", &[]).1);
        for path in [
            "/started",
            "/subscription_count",
            "/values",
            "/clients/subscribers",
            "/clients/posters",
            "/requests/total",
            "/requests/per_second",
            "/requests/pickups/per_second_last_minute",
            "/requests/processed/total",
            "/requests/getvals/total",
        ] {
            assert!(stats.pointer(path).is_some(), "{path} in {stats}");
        }
        assert_eq!(stats.pointer("/requests/getvals/total"), Some(&json!(1)));
        assert_eq!(broker.state.statuses().get(&404), Some(&1));
    }

    #[test]
    fn stats_keep_moustiques_keys_and_add_the_metrics_figures() {
        let mut broker = Broker::new(HttpConfig::default());
        let _ = broker.request("GET /nowhere HTTP/1.1\r\n\r\n");
        let stats = stats_document(&broker.router, &broker.state, &busy_figures(), 2_000);
        for path in ["/started", "/subscription_count", "/values", "/clients/subscribers", "/clients/posters"] {
            assert!(stats.pointer(path).is_some(), "{path} in {stats}");
        }
        for key in ["total", "per_second", "per_second_last_minute"] {
            for group in ["pickups", "processed", "getvals"] {
                assert!(stats["requests"][group].get(key).is_some(), "requests.{group}.{key}");
            }
        }
        assert_eq!(stats["deliveries"], 7);
        assert_eq!(stats["dropped"], json!({"slow_consumer": 1, "queue_overflow": 0, "local_queue": 2}));
        assert_eq!(stats["disconnects"], json!({"protocol_error": 3, "slow_consumer": 1}));
        assert_eq!(stats["store_commit_seconds"]["count"], 5);
        assert_eq!(stats["http_responses"]["404"], 1);
    }

    /// Every document a fixed broker serves, as `(call, body)`: the
    /// Moustique ones decoded, the status page and `/metrics` as JSON
    /// strings, so each fits on a line of `testdata/documents.golden`.
    fn served_documents() -> Vec<(&'static str, String)> {
        let mut broker = Broker::new(HttpConfig::default());
        let now = broker.now;
        let ip: IpAddr = "198.51.100.7".parse().unwrap();
        let figures = || Figures {
            connections_total: 9,
            refused_connections: 1,
            uptime_secs: 1_000,
            threads: Some(7),
            rss_bytes: Some(12_345_678),
            store_error: Some("disk full".into()),
            peers: vec![PeerReport {
                peer: "192.0.2.9".into(),
                faults: 21,
                last_fault: crate::auth::Fault::WrongCredentials,
                first: now - Duration::from_secs(60),
                last: now - Duration::from_secs(1),
                throttled_since: Some(now - Duration::from_secs(2)),
                retry_after: Duration::from_millis(2500),
            }],
            ..busy_figures()
        };
        let limits = TopicLimits::default();
        let filter = |text: &str| Filter::new(text, &limits).unwrap();
        let serve_call = |broker: &mut Broker, call: Call, unix_time: u64| {
            let context = Context { now, unix_time, ip: Some(ip), encoding: Encoding::Current };
            let effects = serve(
                &mut broker.router,
                &mut broker.state,
                &broker.config,
                call,
                Ok(Identity::Anonymous),
                context,
                TestSink::Conn("stream"),
                TestSink::Http,
                figures,
            );
            match effects.reply {
                Reply::Response(response) if response.content_type == response::TEXT => {
                    String::from_utf8(decode_value(&response.body, Encoding::Current)).unwrap()
                }
                Reply::Response(response) if response.content_type == response::JSON => {
                    String::from_utf8(response.body.to_vec()).unwrap()
                }
                Reply::Response(response) => serde_json::to_string(&String::from_utf8_lossy(&response.body)).unwrap(),
                other => panic!("{other:?}"),
            }
        };
        for (client, topic) in [("c1", "/s/#"), ("c1", "/s/+/t"), ("c2", "/s/#")] {
            serve_call(&mut broker, Call::Subscribe { filter: filter(topic), client: client.into() }, 1_990);
        }
        let session = broker.router.add_subscriber(NamespaceId::PUBLIC, TestSink::Conn("binary"));
        let _ = broker.router.claim_client_id(session, "sensor-1");
        let post = |topic: &str, message: &str, from: Option<&str>, updated_time: Option<u64>| Call::Post {
            topic: topic.into(),
            message: message.as_bytes().to_vec(),
            from: from.map(Into::into),
            updated_time,
        };
        serve_call(&mut broker, post("/s/a/t", "23.1", Some("app"), None), 1_995);
        serve_call(&mut broker, post("/s/b", "2", Some("app"), Some(1_500)), 1_996);
        serve_call(&mut broker, post("/s/c", "x", None, None), 1_997);
        serve_call(&mut broker, post("/s/a/t", "23.2", Some("other"), None), 1_998);
        let put = Call::PutVal { name: "v".into(), value: b"42".to_vec(), from: None, updated_time: Some(77) };
        serve_call(&mut broker, put, 1_999);
        broker.state.record_serve_time(Duration::from_micros(1_500));
        broker.state.record_serve_time(Duration::from_micros(500));
        let calls = [
            ("PICKUP", Call::Pickup { client: "c1".into() }),
            ("PICKUP empty", Call::Pickup { client: "c1".into() }),
            ("PICKUP unknown", Call::Pickup { client: "stranger".into() }),
            ("GETVAL", Call::GetVal { topic: "/s/a/t".into() }),
            ("GETVALSBYREGEX", Call::GetValsByRegex { pattern: "/s/".into() }),
            ("VERSION", Call::Version),
            ("TOPICS", Call::Topics),
            ("POSTERS", Call::Posters),
            ("CROOKS", Call::Crooks),
            ("PEERHOSTS", Call::PeerHosts),
            ("LOG", Call::Log),
            ("CLIENTS", Call::Clients { plain: false }),
            ("/api/v1/clients", Call::Clients { plain: true }),
            ("STATS", Call::Stats { plain: false }),
            ("/api/v1/stats", Call::Stats { plain: true }),
            ("/api/v1/value", Call::Value { topic: "v".into() }),
            ("/api/v1/values", Call::Values { filter: filter("/s/#") }),
            ("/STATUS", Call::Status),
            ("/metrics", Call::Metrics),
        ];
        calls.into_iter().map(|(name, call)| (name, serve_call(&mut broker, call, 2_000))).collect()
    }

    /// The documents keep their bytes: key names, value types, nesting and
    /// key order. The version is left out, to survive a release.
    #[test]
    fn documents_are_served_as_recorded() {
        let version = env!("CARGO_PKG_VERSION");
        let golden = include_str!("testdata/documents.golden").replace("{VERSION}", version);
        let mut expected = golden.lines();
        for (name, body) in served_documents() {
            let line = expected.next().unwrap_or_else(|| panic!("{name} is not recorded"));
            let (recorded_name, recorded) = line.split_once('\t').unwrap();
            assert_eq!(recorded_name, name);
            assert_eq!(json(&body), json(recorded), "{name}: the same value");
            assert_eq!(body, recorded, "{name}: the same bytes");
        }
        assert_eq!(expected.next(), None, "every recorded document is served");
    }
}
