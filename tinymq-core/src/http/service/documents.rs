//! The JSON documents of the statistics calls (STATS, CLIENTS, POSTERS,
//! CROOKS, PEERHOSTS, LOG) and PICKUP's answer to an unknown client, as
//! structs with Moustique's key names.
//!
//! Fields are declared in the byte order of their JSON names: the order
//! the `json!` maps these replaced printed them in (serde_json sorts map
//! keys), so the documents keep their bytes (`testdata/documents.golden`).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use serde_json::Value;

use super::state::{LOG_SHOWN, POSTER_WINDOW_SECS, PeerHost, Poster, Rate};
use super::{Context, HttpState, RESUBSCRIBE_TOPIC, SinkKind};
use crate::auth::PeerReport;
use crate::http::json::{message_object, moustique_message_object, nice_datetime};
use crate::message::Message;
use crate::metrics::Figures;
use crate::router::{NamespaceId, Router};

/// PICKUP's answer to a client the broker does not know: a message on
/// [`RESUBSCRIBE_TOPIC`] telling it to subscribe again.
#[derive(Serialize)]
pub(super) struct ResubscribeDocument {
    #[serde(rename = "/server/action/resubscribe")]
    resubscribe: [Value; 1],
}

pub(super) fn resubscribe_document(unix_time: u64) -> ResubscribeDocument {
    let message = Message {
        topic: RESUBSCRIBE_TOPIC.into(),
        payload: b"resubscribe"[..].into(),
        from: "tinymq".into(),
        updated_time: unix_time,
        ip: None,
    };
    ResubscribeDocument { resubscribe: [message_object(&message)] }
}

/// STATS: Moustique's keys, and the figures `/metrics` adds under the
/// same names.
#[derive(Serialize)]
pub(super) struct StatsDocument<'a> {
    /// Milliseconds, as Moustique's handler timing.
    average_request_time: f64,
    /// Only with a bridge: a broker without one shows what it always did.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    bridges: Vec<BridgeDocument<'a>>,
    bytes_in: u64,
    bytes_out: u64,
    clients: ClientCounts,
    connections: BTreeMap<&'a str, u64>,
    connections_total: u64,
    deliveries: u64,
    disconnects: BTreeMap<&'a str, u64>,
    dropped: Drops,
    goroutines: u64,
    http_responses: BTreeMap<String, u64>,
    local_queue_drops: u64,
    memory_usage: String,
    messages_in: u64,
    messages_out: u64,
    qos1: Qos1Document,
    refused_connections: u64,
    refused_peers: u64,
    requests: Requests,
    sessions: SessionsDocument,
    slow_consumer_drops: u64,
    started: String,
    started_unix: u64,
    store_commit_seconds: CommitSeconds,
    store_commits: u64,
    store_committed_writes: u64,
    store_error: Option<&'a str>,
    store_failed_commits: u64,
    store_failures: u64,
    store_pending: u64,
    store_records_written: u64,
    store_writes: u64,
    subscribers: usize,
    subscription_count: usize,
    throttled_peers: u64,
    throttled_requests: u64,
    tls_handshake_failures: u64,
    uptime_seconds: u64,
    values: usize,
    version: &'static str,
}

/// One of STATS' `bridges`.
#[derive(Serialize)]
struct BridgeDocument<'a> {
    connected: bool,
    drops: u64,
    kind: &'a str,
    last_error: Option<&'a str>,
    messages_in: u64,
    messages_out: u64,
    queued: u64,
    reconnects: u64,
    server: Option<&'a str>,
    servers: &'a [String],
}

/// STATS' `clients`: Moustique clients and publishers.
#[derive(Serialize)]
struct ClientCounts {
    expired: u64,
    posters: usize,
    queue_dropped_messages: u64,
    queued_messages: usize,
    subscribers: usize,
}

/// STATS' `dropped`, by the reasons `/metrics` names.
#[derive(Serialize)]
struct Drops {
    local_queue: u64,
    queue_overflow: u64,
    session_queue: u64,
    slow_consumer: u64,
}

/// STATS' `qos1`: the sessions' QoS 1 queues.
#[derive(Serialize)]
struct Qos1Document {
    acknowledged: u64,
    dropped: u64,
    inflight: u64,
    queued: u64,
    resent: u64,
}

/// STATS' `sessions`: the durable sessions.
#[derive(Serialize)]
struct SessionsDocument {
    online: u64,
    persistent: u64,
    total: u64,
}

/// STATS' `requests`: all HTTP requests, and three kinds of them.
#[derive(Serialize)]
struct Requests {
    getvals: RateDocument,
    per_second: f64,
    per_second_last_minute: f64,
    pickups: RateDocument,
    processed: RateDocument,
    total: u64,
}

/// A [`Rate`]: its count, its rate since the start and over the last
/// minute.
#[derive(Serialize)]
struct RateDocument {
    per_second: f64,
    per_second_last_minute: f64,
    total: u64,
}

impl RateDocument {
    fn new(rate: &Rate, unix_time: u64, uptime_secs: u64) -> Self {
        RateDocument {
            per_second: rate.total as f64 / uptime_secs.max(1) as f64,
            per_second_last_minute: rate.last_minute(unix_time) as f64 / uptime_secs.clamp(1, 60) as f64,
            total: rate.total,
        }
    }
}

/// STATS' `store_commit_seconds`: the histogram's count and sum.
#[derive(Serialize)]
struct CommitSeconds {
    count: u64,
    sum: f64,
}

pub(super) fn stats_document<'a, S: Clone>(
    router: &Router<S>,
    state: &HttpState,
    figures: &'a Figures,
    unix: u64,
) -> StatsDocument<'a> {
    let uptime = figures.uptime_secs;
    let posters = state.posters.values().filter(|p| unix.saturating_sub(p.last_unix) < POSTER_WINDOW_SECS).count();
    let memory_usage =
        figures.rss_bytes.map_or_else(|| "N/A".to_owned(), |bytes| format!("{:.1} MB", bytes as f64 / 1e6));
    let requests = RateDocument::new(&state.requests, unix, uptime);
    StatsDocument {
        average_request_time: state.serve_nanos as f64 / 1e6 / state.served.max(1) as f64,
        bridges: figures
            .bridges
            .iter()
            .map(|b| BridgeDocument {
                connected: b.connected,
                drops: b.drops,
                kind: &b.kind,
                last_error: b.last_error.as_deref(),
                messages_in: b.messages_in,
                messages_out: b.messages_out,
                queued: b.queued,
                reconnects: b.reconnects,
                server: b.server.as_deref(),
                servers: &b.servers,
            })
            .collect(),
        bytes_in: figures.bytes_in,
        bytes_out: figures.bytes_out,
        clients: ClientCounts {
            expired: state.clients.expired_total(),
            posters,
            queue_dropped_messages: state.clients.dropped_total(),
            queued_messages: state.clients.iter().map(|c| c.queued()).sum(),
            subscribers: state.clients.len(),
        },
        connections: figures.connections.iter().copied().collect(),
        connections_total: figures.connections_total,
        deliveries: figures.messages_out,
        disconnects: figures.disconnects.iter().copied().collect(),
        dropped: Drops {
            local_queue: figures.local_queue_drops,
            queue_overflow: state.clients.dropped_total(),
            session_queue: figures.sessions.dropped,
            slow_consumer: figures.slow_consumer_drops,
        },
        goroutines: figures.threads.unwrap_or(0),
        http_responses: state.statuses.iter().map(|(status, n)| (status.to_string(), *n)).collect(),
        local_queue_drops: figures.local_queue_drops,
        memory_usage,
        messages_in: figures.messages_in,
        messages_out: figures.messages_out,
        qos1: Qos1Document {
            acknowledged: figures.sessions.acknowledged,
            dropped: figures.sessions.dropped,
            inflight: figures.sessions.inflight,
            queued: figures.sessions.queued,
            resent: figures.sessions.resent,
        },
        refused_connections: figures.refused_connections,
        refused_peers: figures.refused_peers,
        requests: Requests {
            getvals: RateDocument::new(&state.getvals, unix, uptime),
            per_second: requests.per_second,
            per_second_last_minute: requests.per_second_last_minute,
            pickups: RateDocument::new(&state.pickups, unix, uptime),
            processed: RateDocument::new(&state.processed, unix, uptime),
            total: requests.total,
        },
        sessions: SessionsDocument {
            online: figures.sessions.online,
            persistent: figures.sessions.persistent,
            total: figures.sessions.total,
        },
        slow_consumer_drops: figures.slow_consumer_drops,
        started: nice_datetime(state.started_unix),
        started_unix: state.started_unix,
        store_commit_seconds: CommitSeconds {
            count: figures.store_commit_seconds.count,
            sum: figures.store_commit_seconds.sum_seconds(),
        },
        store_commits: figures.store_commits,
        store_committed_writes: figures.store_committed_writes,
        store_error: figures.store_error.as_deref(),
        store_failed_commits: figures.store_failed_commits,
        store_failures: figures.store_failures,
        store_pending: figures.store_pending,
        store_records_written: figures.store_records_written,
        store_writes: figures.store_writes,
        subscribers: router.subscriber_count(),
        subscription_count: router.subscription_count(),
        throttled_peers: figures.throttled_peers,
        throttled_requests: figures.throttled_requests,
        tls_handshake_failures: figures.tls_handshake_failures,
        uptime_seconds: uptime,
        values: router.value_count(),
        version: env!("CARGO_PKG_VERSION"),
    }
}

/// A row of CLIENTS: a Moustique client, or a connected subscriber. The
/// latter have no pickups and no request count: those fields are null,
/// so readers of CLIENTS find every key; `Queued` and `Subscriptions` are
/// left out.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct ClientRow<'a> {
    first_seen: u64,
    first_seen_nice_datetime: String,
    #[serde(rename = "IP")]
    ip: String,
    latest_pickup: Option<u64>,
    latest_pickup_nice_datetime: Option<String>,
    latest_system_pickup: Option<u64>,
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    queued: Option<usize>,
    request_counter: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    subscriptions: Option<Vec<&'a str>>,
    transport: &'static str,
}

/// CLIENTS: the namespace's Moustique clients, then its connected
/// subscribers by name.
pub(super) fn clients_document<'a, S: Clone + SinkKind>(
    router: &'a Router<S>,
    state: &'a HttpState,
    namespace: NamespaceId,
) -> Vec<ClientRow<'a>> {
    let mut list: Vec<ClientRow<'a>> = state
        .clients
        .iter()
        .filter(|c| c.namespace == namespace)
        .map(|c| ClientRow {
            first_seen: c.first_seen,
            first_seen_nice_datetime: nice_datetime(c.first_seen),
            ip: c.ip.map(|ip| ip.to_string()).unwrap_or_default(),
            latest_pickup: Some(c.latest_pickup),
            latest_pickup_nice_datetime: Some(nice_datetime(c.latest_pickup)),
            latest_system_pickup: Some(c.latest_pickup),
            name: &c.name,
            queued: Some(c.queued()),
            request_counter: Some(c.requests),
            subscriptions: Some(c.filters.iter().map(|f| f.as_str()).collect()),
            transport: "http",
        })
        .collect();
    let mut sessions: Vec<_> = router.clients(namespace).collect();
    sessions.sort_by(|a, b| a.client_id.cmp(b.client_id));
    list.extend(sessions.into_iter().map(|entry| ClientRow {
        first_seen: entry.since,
        first_seen_nice_datetime: nice_datetime(entry.since),
        ip: entry.ip.map(|ip| ip.to_string()).unwrap_or_default(),
        latest_pickup: None,
        latest_pickup_nice_datetime: None,
        latest_system_pickup: None,
        name: entry.client_id,
        queued: None,
        request_counter: None,
        subscriptions: None,
        transport: entry.sink.transport(),
    }));
    list
}

/// A row of POSTERS: a publisher, its latest post overall and per topic.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct PosterRow<'a> {
    first_seen: u64,
    first_seen_nice_datetime: String,
    #[serde(rename = "IP")]
    ip: String,
    latest_post_nice_datetime: String,
    latest_post_time: u64,
    message_count: u64,
    name: &'a str,
    #[serde(rename = "latest_post")]
    latest_post: Value,
    #[serde(rename = "latest_posts_by_topic")]
    latest_posts_by_topic: BTreeMap<&'a str, Value>,
}

/// POSTERS: Moustique's list of publishers heard from in the last hour,
/// newest first.
pub(super) fn posters_document(state: &HttpState, namespace: NamespaceId, unix: u64) -> Vec<PosterRow<'_>> {
    let mut posters: Vec<(&Arc<str>, &Poster)> = state
        .posters
        .iter()
        .filter(|((ns, _), p)| *ns == namespace && unix.saturating_sub(p.last_unix) < POSTER_WINDOW_SECS)
        .map(|((_, name), p)| (name, p))
        .collect();
    posters.sort_by(|a, b| b.1.last_unix.cmp(&a.1.last_unix).then_with(|| a.0.cmp(b.0)));
    posters
        .into_iter()
        .map(|(name, p)| {
            let latest = p.latest.message();
            PosterRow {
                first_seen: p.first_unix,
                first_seen_nice_datetime: nice_datetime(p.first_unix),
                ip: latest.ip.map(|ip| ip.to_string()).unwrap_or_default(),
                latest_post_nice_datetime: nice_datetime(p.last_unix),
                latest_post_time: p.last_unix,
                message_count: p.count,
                name,
                latest_post: moustique_message_object(latest, &[]),
                latest_posts_by_topic: p
                    .by_topic
                    .iter()
                    .map(|d| (&*d.message().topic, moustique_message_object(d.message(), &[])))
                    .collect(),
            }
        })
        .collect()
}

/// A row of CROOKS: Moustique's fields, and ours: why (`Reason`) and for
/// how long more the peer is refused.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct CrookRow<'a> {
    attempts: u64,
    banned_at: u64,
    banned_at_nice_datetime: String,
    first_seen: u64,
    first_seen_nice_datetime: String,
    #[serde(rename = "IP")]
    ip: &'a str,
    is_banned: bool,
    last_seen: u64,
    last_seen_nice_datetime: String,
    reason: &'static str,
    retry_after_seconds: u64,
}

/// CROOKS: Moustique's list of peers that made bad requests.
pub(super) fn crooks_document<'a>(peers: &'a [PeerReport], context: &Context) -> Vec<CrookRow<'a>> {
    // The budgets keep monotonic times; shown as Unix seconds.
    let unix = |at: Instant| context.unix_time.saturating_sub(context.now.saturating_duration_since(at).as_secs());
    peers
        .iter()
        .map(|peer| {
            let (first, last) = (unix(peer.first), unix(peer.last));
            let banned = peer.throttled_since.map(unix);
            CrookRow {
                attempts: peer.faults,
                banned_at: banned.unwrap_or(0),
                banned_at_nice_datetime: banned.map(nice_datetime).unwrap_or_default(),
                first_seen: first,
                first_seen_nice_datetime: nice_datetime(first),
                ip: &peer.peer,
                is_banned: banned.is_some(),
                last_seen: last,
                last_seen_nice_datetime: nice_datetime(last),
                reason: peer.last_fault.text(),
                retry_after_seconds: peer.retry_after.as_secs_f64().ceil() as u64,
            }
        })
        .collect()
}

/// A row of PEERHOSTS: an address and its requests.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct PeerHostRow {
    first_seen: u64,
    first_seen_nice_datetime: String,
    #[serde(rename = "IP")]
    ip: String,
    last_seen: u64,
    last_seen_nice_datetime: String,
    request_counter: u64,
}

/// PEERHOSTS: the addresses that made requests to the namespace, most
/// recent first.
pub(super) fn peer_hosts_document(state: &HttpState, namespace: NamespaceId) -> Vec<PeerHostRow> {
    let mut hosts: Vec<(&IpAddr, &PeerHost)> =
        state.peer_hosts.iter().filter(|((ns, _), _)| *ns == namespace).map(|((_, ip), h)| (ip, h)).collect();
    hosts.sort_by(|a, b| b.1.last_unix.cmp(&a.1.last_unix).then_with(|| a.0.cmp(b.0)));
    hosts
        .into_iter()
        .map(|(ip, host)| PeerHostRow {
            first_seen: host.first_unix,
            first_seen_nice_datetime: nice_datetime(host.first_unix),
            ip: ip.to_string(),
            last_seen: host.last_unix,
            last_seen_nice_datetime: nice_datetime(host.last_unix),
            request_counter: host.requests,
        })
        .collect()
}

/// LOG, in Moustique's `{"lines": [...], "total": N}`.
#[derive(Serialize)]
pub(super) struct LogDocument {
    lines: Vec<String>,
    total: u64,
}

/// LOG: the namespace's latest Moustique requests, oldest first, and how
/// many it made.
pub(super) fn log_document(state: &HttpState, namespace: NamespaceId) -> LogDocument {
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
    LogDocument { lines, total: state.log_total.get(&namespace).copied().unwrap_or(0) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Identity;
    use crate::http::call::Call;
    use crate::http::encoding::{Encoding, decode_value};
    use crate::http::response;
    use crate::http::service::test_broker::{Broker, TestSink, busy_figures, json};
    use crate::http::service::{HttpConfig, Reply};
    use serde_json::json;

    use crate::topic::{Filter, TopicLimits};
    use std::time::{Duration, Instant};

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

    /// A peer throttled for wrong credentials, as of `now`.
    fn crook(now: Instant) -> PeerReport {
        PeerReport {
            peer: "192.0.2.9".into(),
            faults: 21,
            last_fault: crate::auth::Fault::WrongCredentials,
            first: now - Duration::from_secs(60),
            last: now - Duration::from_secs(1),
            throttled_since: Some(now - Duration::from_secs(2)),
            retry_after: Duration::from_millis(2500),
        }
    }

    #[test]
    fn crooks_and_peer_hosts_say_who_when_and_why() {
        let mut broker = Broker::new(HttpConfig::default());
        let now = broker.now;
        let figures = || Figures { peers: vec![crook(now)], ..Figures::default() };
        let ip: IpAddr = "198.51.100.7".parse().unwrap();
        let context = Context { now, unix_time: 2_000, ip: Some(ip), encoding: Encoding::Legacy };
        let serve_call = |broker: &mut Broker, call: Call| {
            let effects = broker.serve_as(call, Ok(Identity::Anonymous), context, figures);
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
        let stats =
            serde_json::to_value(stats_document(&broker.router, &broker.state, &busy_figures(), 2_000)).unwrap();
        for path in ["/started", "/subscription_count", "/values", "/clients/subscribers", "/clients/posters"] {
            assert!(stats.pointer(path).is_some(), "{path} in {stats}");
        }
        for key in ["total", "per_second", "per_second_last_minute"] {
            for group in ["pickups", "processed", "getvals"] {
                assert!(stats["requests"][group].get(key).is_some(), "requests.{group}.{key}");
            }
        }
        assert_eq!(stats["deliveries"], 7);
        assert_eq!(
            stats["dropped"],
            json!({"slow_consumer": 1, "queue_overflow": 0, "local_queue": 2, "session_queue": 4})
        );
        assert_eq!(stats["sessions"], json!({"total": 3, "persistent": 2, "online": 1}));
        assert_eq!(stats["qos1"], json!({"queued": 5, "inflight": 2, "acknowledged": 9, "resent": 1, "dropped": 4}));
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
            peers: vec![crook(now)],
            ..busy_figures()
        };
        let limits = TopicLimits::default();
        let filter = |text: &str| Filter::new(text, &limits).unwrap();
        let serve_call = |broker: &mut Broker, call: Call, unix_time: u64| {
            let context = Context { now, unix_time, ip: Some(ip), encoding: Encoding::Current };
            let effects = broker.serve_as(call, Ok(Identity::Anonymous), context, figures);
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
