//! `/metrics`: the broker's figures in Prometheus' text format.

use std::fmt::Write as _;

use super::HttpState;
use crate::metrics::{DurationHistogram, Figures};
use crate::router::Router;

pub(super) fn metrics_text<S: Clone>(router: &Router<S>, state: &HttpState, figures: &Figures) -> String {
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, u64)]| {
        let _ = writeln!(out, "# HELP tinymq_{name} {help}\n# TYPE tinymq_{name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "tinymq_{name}{labels} {value}");
        }
    };
    let one = |value: u64| [(String::new(), value)];
    let by_transport: Vec<(String, u64)> =
        figures.connections.iter().map(|(name, n)| (format!("{{transport=\"{name}\"}}"), *n)).collect();
    metric("connections", "gauge", "Open connections.", &by_transport);
    metric("connections_accepted_total", "counter", "Connections accepted.", &one(figures.connections_total));
    metric(
        "connections_refused_total",
        "counter",
        "Connections refused at the limit.",
        &one(figures.refused_connections),
    );
    metric(
        "refused_peers_total",
        "counter",
        "Connections refused: peer not on the allow-list.",
        &one(figures.refused_peers),
    );
    metric(
        "throttled_requests_total",
        "counter",
        "Connections, logins and requests refused: their address spent its budget of bad requests.",
        &one(figures.throttled_requests),
    );
    metric("throttled_peers", "gauge", "Addresses out of their budget of bad requests.", &one(figures.throttled_peers));
    metric(
        "tls_handshake_failures_total",
        "counter",
        "TLS handshakes that failed.",
        &one(figures.tls_handshake_failures),
    );
    metric(
        "subscriptions",
        "gauge",
        "Subscriptions (subscriber, filter pairs).",
        &one(router.subscription_count() as u64),
    );
    metric("stored_values", "gauge", "Stored values.", &one(router.value_count() as u64));
    metric("http_clients", "gauge", "Registered Moustique HTTP clients.", &one(state.clients.len() as u64));
    metric("messages_in_total", "counter", "Messages published.", &one(figures.messages_in));
    metric(
        "messages_out_total",
        "counter",
        "Deliveries: one per message per subscriber it reached, every transport.",
        &one(figures.messages_out),
    );
    metric("bytes_in_total", "counter", "Bytes read from sockets.", &one(figures.bytes_in));
    metric("bytes_out_total", "counter", "Bytes written to sockets.", &one(figures.bytes_out));
    let drops = [
        ("{reason=\"slow_consumer\"}".to_owned(), figures.slow_consumer_drops),
        ("{reason=\"queue_overflow\"}".to_owned(), state.clients.dropped_total()),
        ("{reason=\"local_queue\"}".to_owned(), figures.local_queue_drops),
        ("{reason=\"session_queue\"}".to_owned(), figures.sessions.dropped),
    ];
    metric(
        "dropped_messages_total",
        "counter",
        "Drops by reason: subscribers cut as slow consumers, messages dropped from full HTTP client \
         queues (queue_overflow), from full in-process queues (local_queue) and QoS 1 messages refused \
         by full session queues (session_queue).",
        &drops,
    );
    let sessions = &figures.sessions;
    metric("sessions", "gauge", "Durable sessions held, with a connection or not.", &one(sessions.total));
    metric("sessions_persistent", "gauge", "Sessions that outlive their connection.", &one(sessions.persistent));
    metric("sessions_online", "gauge", "Sessions a connection or in-process client holds.", &one(sessions.online));
    metric(
        "qos1_queued_messages",
        "gauge",
        "QoS 1 messages in session queues, in flight included.",
        &one(sessions.queued),
    );
    metric("qos1_inflight_messages", "gauge", "QoS 1 messages sent and not yet acknowledged.", &one(sessions.inflight));
    metric(
        "qos1_acknowledged_total",
        "counter",
        "QoS 1 messages acknowledged by their subscriber.",
        &one(sessions.acknowledged),
    );
    metric(
        "qos1_resent_total",
        "counter",
        "QoS 1 messages sent again (DUP) after a reconnect or restart.",
        &one(sessions.resent),
    );
    let disconnects: Vec<(String, u64)> =
        figures.disconnects.iter().map(|(reason, n)| (format!("{{reason=\"{reason}\"}}"), *n)).collect();
    metric("disconnects_total", "counter", "Disconnects the broker sent, by reason.", &disconnects);
    metric("store_writes_total", "counter", "Writes handed to the store.", &one(figures.store_writes));
    metric(
        "store_committed_writes_total",
        "counter",
        "Writes the store made durable.",
        &one(figures.store_committed_writes),
    );
    metric(
        "store_records_written_total",
        "counter",
        "Records written by store commits.",
        &one(figures.store_records_written),
    );
    metric("store_commits_total", "counter", "Store transactions committed.", &one(figures.store_commits));
    metric("store_failed_commits_total", "counter", "Store commits that failed.", &one(figures.store_failed_commits));
    metric("store_failures_total", "counter", "Writes answered with a store failure.", &one(figures.store_failures));
    metric("store_pending", "gauge", "Records waiting for the next store commit.", &one(figures.store_pending));
    metric(
        "store_failing",
        "gauge",
        "1 while the store's last commit failed.",
        &one(u64::from(figures.store_error.is_some())),
    );
    let statuses: Vec<(String, u64)> =
        state.statuses.iter().map(|(status, n)| (format!("{{status=\"{status}\"}}"), *n)).collect();
    metric("http_requests_total", "counter", "HTTP requests answered, by status.", &statuses);
    metric("uptime_seconds", "gauge", "Seconds since start.", &one(figures.uptime_secs));
    if !figures.bridges.is_empty() {
        let per_bridge = |value: fn(&crate::metrics::BridgeFigures) -> u64| -> Vec<(String, u64)> {
            figures.bridges.iter().enumerate().map(|(i, b)| (format!("{{bridge=\"{i}\"}}"), value(b))).collect()
        };
        let kinds: Vec<(String, u64)> = figures
            .bridges
            .iter()
            .enumerate()
            .map(|(i, b)| (format!("{{bridge=\"{i}\",kind=\"{}\"}}", b.kind), 1))
            .collect();
        metric("bridge_info", "gauge", "Each bridge, labelled with what the far side speaks (nats, mqtt).", &kinds);
        metric("bridge_connected", "gauge", "1 while the bridge is connected.", &per_bridge(|b| b.connected.into()));
        metric(
            "bridge_messages_in_total",
            "counter",
            "Messages taken in from the far side.",
            &per_bridge(|b| b.messages_in),
        );
        metric(
            "bridge_messages_out_total",
            "counter",
            "Messages sent to the far side.",
            &per_bridge(|b| b.messages_out),
        );
        metric(
            "bridge_drops_total",
            "counter",
            "Messages the bridge dropped: queue full while down, outbound full, slow consumer.",
            &per_bridge(|b| b.drops),
        );
        metric("bridge_reconnects_total", "counter", "Connections after the first.", &per_bridge(|b| b.reconnects));
        metric("bridge_queued", "gauge", "Messages held until the bridge is up.", &per_bridge(|b| b.queued));
    }
    let commits = &figures.store_commit_seconds;
    let _ = writeln!(
        out,
        "# HELP tinymq_store_commit_seconds How long store commits took.\n# TYPE tinymq_store_commit_seconds histogram"
    );
    let mut cumulative = 0;
    for (bound, n) in DurationHistogram::BOUNDS.iter().zip(commits.buckets) {
        cumulative += n;
        let _ = writeln!(out, "tinymq_store_commit_seconds_bucket{{le=\"{bound}\"}} {cumulative}");
    }
    let _ = writeln!(out, "tinymq_store_commit_seconds_bucket{{le=\"+Inf\"}} {}", commits.count);
    let _ = writeln!(out, "tinymq_store_commit_seconds_sum {}", commits.sum_seconds());
    let _ = writeln!(out, "tinymq_store_commit_seconds_count {}", commits.count);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::service::HttpConfig;
    use crate::http::service::documents::stats_document;
    use crate::http::service::test_broker::{Broker, busy_figures};
    use serde_json::{Value, json};
    use std::collections::HashSet;

    #[test]
    fn store_and_access_figures_show_in_stats_and_metrics() {
        let broker = Broker::new(HttpConfig::default());
        let figures = Figures {
            store_writes: 10,
            store_committed_writes: 8,
            store_records_written: 3,
            store_commits: 2,
            store_failed_commits: 1,
            store_failures: 2,
            store_pending: 2,
            store_error: Some("disk full".into()),
            refused_peers: 4,
            throttled_requests: 5,
            throttled_peers: 1,
            ..Figures::default()
        };
        let stats = serde_json::to_value(stats_document(&broker.router, &broker.state, &figures, 2_000)).unwrap();
        for (key, value) in [
            ("store_writes", json!(10)),
            ("store_committed_writes", json!(8)),
            ("store_records_written", json!(3)),
            ("store_commits", json!(2)),
            ("store_failed_commits", json!(1)),
            ("store_failures", json!(2)),
            ("store_pending", json!(2)),
            ("store_error", json!("disk full")),
            ("refused_peers", json!(4)),
            ("throttled_requests", json!(5)),
            ("throttled_peers", json!(1)),
        ] {
            assert_eq!(stats[key], value, "{key} in {stats}");
        }
        let metrics = metrics_text(&broker.router, &broker.state, &figures);
        for line in [
            "tinymq_store_writes_total 10",
            "tinymq_store_committed_writes_total 8",
            "tinymq_store_records_written_total 3",
            "tinymq_store_commits_total 2",
            "tinymq_store_failed_commits_total 1",
            "tinymq_store_failures_total 2",
            "tinymq_store_pending 2",
            "tinymq_store_failing 1",
            "tinymq_refused_peers_total 4",
            "tinymq_throttled_requests_total 5",
            "tinymq_throttled_peers 1",
        ] {
            assert!(metrics.lines().any(|l| l == line), "{line:?} in\n{metrics}");
        }
        for kind in metrics.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
            let (name, kind) = kind.split_once(' ').unwrap();
            assert_eq!(kind == "counter", name.ends_with("_total"), "{name} is a {kind}");
        }
        let healthy = Figures::default();
        let healthy_stats =
            serde_json::to_value(stats_document(&broker.router, &broker.state, &healthy, 2_000)).unwrap();
        assert_eq!(healthy_stats["store_error"], Value::Null);
        assert!(metrics_text(&broker.router, &broker.state, &healthy).lines().any(|l| l == "tinymq_store_failing 0"));
    }

    #[test]
    fn bridge_figures_show_per_bridge_and_only_with_a_bridge() {
        let broker = Broker::new(HttpConfig::default());
        let bridge = crate::metrics::BridgeFigures {
            kind: "nats".into(),
            servers: vec!["127.0.0.1:4222".into()],
            connected: true,
            server: Some("127.0.0.1:4222".into()),
            messages_in: 3,
            messages_out: 4,
            drops: 5,
            reconnects: 1,
            queued: 0,
            last_error: Some("-ERR 'Slow Consumer'".into()),
        };
        let down = crate::metrics::BridgeFigures { connected: false, kind: "mqtt".into(), ..bridge.clone() };
        let figures = Figures { bridges: vec![bridge, down], ..Figures::default() };
        let metrics = metrics_text(&broker.router, &broker.state, &figures);
        for line in [
            "tinymq_bridge_connected{bridge=\"0\"} 1",
            "tinymq_bridge_connected{bridge=\"1\"} 0",
            "tinymq_bridge_messages_in_total{bridge=\"0\"} 3",
            "tinymq_bridge_messages_out_total{bridge=\"0\"} 4",
            "tinymq_bridge_drops_total{bridge=\"1\"} 5",
            "tinymq_bridge_reconnects_total{bridge=\"0\"} 1",
            "tinymq_bridge_queued{bridge=\"0\"} 0",
            "tinymq_bridge_info{bridge=\"1\",kind=\"mqtt\"} 1",
        ] {
            assert!(metrics.lines().any(|l| l == line), "{line:?} in\n{metrics}");
        }
        let stats = serde_json::to_value(stats_document(&broker.router, &broker.state, &figures, 2_000)).unwrap();
        assert_eq!(stats["bridges"][0]["server"], json!("127.0.0.1:4222"), "{stats}");
        assert_eq!(stats["bridges"][1]["connected"], json!(false), "{stats}");
        assert_eq!(stats["bridges"][1]["kind"], json!("mqtt"), "{stats}");
        assert_eq!(stats["bridges"][0]["last_error"], json!("-ERR 'Slow Consumer'"), "{stats}");
        let none = Figures::default();
        assert!(!metrics_text(&broker.router, &broker.state, &none).contains("tinymq_bridge_"));
        let stats = serde_json::to_value(stats_document(&broker.router, &broker.state, &none, 2_000)).unwrap();
        assert!(stats.get("bridges").is_none(), "{stats}");
    }

    /// What promtool would check, for the parts tinymq uses: every sample
    /// belongs to a family with HELP and TYPE, names and types follow the
    /// conventions, histogram buckets are cumulative and end at +Inf.
    #[test]
    fn metrics_text_is_well_formed_prometheus() {
        let mut broker = Broker::new(HttpConfig::default());
        let _ = broker.request("GET /nowhere HTTP/1.1\r\n\r\n");
        let _ = broker.request("GET /api/v1/health HTTP/1.1\r\n\r\n");
        let text = metrics_text(&broker.router, &broker.state, &busy_figures());
        // Prometheus allows digits after the first character (`qos1`).
        let valid_name = |n: &str| {
            n.starts_with("tinymq_") && n.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        };
        let mut help = HashSet::new();
        let mut kinds = std::collections::HashMap::new();
        let mut buckets: Vec<(String, f64)> = Vec::new();
        let mut samples = 0;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, text) = rest.split_once(' ').expect("HELP has a text");
                assert!(valid_name(name) && !text.is_empty(), "{line}");
                assert!(help.insert(name.to_owned()), "one HELP for {name}");
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(help.contains(name), "HELP before TYPE for {name}");
                assert!(["counter", "gauge", "histogram"].contains(&kind), "{line}");
                assert_eq!(kind == "counter", name.ends_with("_total"), "{name} is a {kind}");
                assert!(kinds.insert(name.to_owned(), kind.to_owned()).is_none(), "one TYPE for {name}");
                continue;
            }
            samples += 1;
            let (series, value) = line.rsplit_once(' ').expect("a sample has a value");
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("number in {line}"));
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => (name, Some(labels.strip_suffix('}').expect("labels close"))),
                None => (series, None),
            };
            assert!(valid_name(name), "{line}");
            let family = kinds.keys().find(|f| {
                *f == name
                    || (kinds[*f] == "histogram"
                        && ["_bucket", "_sum", "_count"].iter().any(|s| name.strip_suffix(s) == Some(f.as_str())))
            });
            let family = family.unwrap_or_else(|| panic!("{line} has no HELP and TYPE"));
            for label in labels.into_iter().flat_map(|l| l.split(',')) {
                let (key, quoted) = label.split_once('=').expect("label=value");
                assert!(key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{line}");
                assert!(quoted.len() >= 2 && quoted.starts_with('"') && quoted.ends_with('"'), "{line}");
            }
            if name.ends_with("_bucket") {
                let le = labels.and_then(|l| l.strip_prefix("le=\"")).and_then(|l| l.strip_suffix('"')).unwrap();
                buckets.push((le.to_owned(), value));
            } else if name.ends_with("_count") && kinds[family] == "histogram" {
                let bounds: Vec<f64> = buckets.iter().map(|(le, _)| le.parse().unwrap_or(f64::INFINITY)).collect();
                assert!(bounds.windows(2).all(|w| w[0] < w[1]), "bounds ascend: {buckets:?}");
                assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "cumulative: {buckets:?}");
                assert_eq!(buckets.last().map(|(le, n)| (le.as_str(), *n)), Some(("+Inf", value)), "{family}");
                buckets.clear();
            }
        }
        assert!(samples > 20);
        for line in [
            "tinymq_connections{transport=\"tcp\"} 2",
            "tinymq_messages_out_total 7",
            "tinymq_dropped_messages_total{reason=\"slow_consumer\"} 1",
            "tinymq_dropped_messages_total{reason=\"local_queue\"} 2",
            "tinymq_dropped_messages_total{reason=\"queue_overflow\"} 0",
            "tinymq_dropped_messages_total{reason=\"session_queue\"} 4",
            "tinymq_sessions 3",
            "tinymq_sessions_persistent 2",
            "tinymq_sessions_online 1",
            "tinymq_qos1_queued_messages 5",
            "tinymq_qos1_inflight_messages 2",
            "tinymq_qos1_acknowledged_total 9",
            "tinymq_qos1_resent_total 1",
            "tinymq_disconnects_total{reason=\"protocol_error\"} 3",
            "tinymq_http_requests_total{status=\"404\"} 1",
            "tinymq_store_commit_seconds_bucket{le=\"0.0005\"} 1",
            "tinymq_store_commit_seconds_bucket{le=\"0.001\"} 3",
            "tinymq_store_commit_seconds_bucket{le=\"1\"} 4",
            "tinymq_store_commit_seconds_bucket{le=\"+Inf\"} 5",
            "tinymq_store_commit_seconds_count 5",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} in\n{text}");
        }
        let sum = text.lines().find_map(|l| l.strip_prefix("tinymq_store_commit_seconds_sum ")).unwrap();
        assert!((sum.parse::<f64>().unwrap() - 2.0045).abs() < 1e-9, "{sum}");
    }
}
