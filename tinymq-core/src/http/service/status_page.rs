//! Moustique's `/STATUS`: a small HTML page of the broker's figures and
//! the caller's Moustique clients.

use std::fmt::Write as _;

use super::HttpState;
use crate::http::json::nice_datetime;
use crate::metrics::Figures;
use crate::router::{NamespaceId, Router};

fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

pub(super) fn status_page<S: Clone>(
    router: &Router<S>,
    state: &HttpState,
    namespace: NamespaceId,
    figures: &Figures,
    unix: u64,
) -> String {
    let mut page = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta name=\"viewport\" \
         content=\"width=device-width,initial-scale=1\"><title>tinymq status</title>\
         <style>body{font-family:system-ui,sans-serif;margin:2em;max-width:60em}td,th{text-align:left;\
         padding:.2em 1em .2em 0}</style></head><body>",
    );
    let _ = write!(page, "<h1>tinymq {}</h1><table>", env!("CARGO_PKG_VERSION"));
    let rows: [(&str, String); 9] = [
        ("started", nice_datetime(state.started_unix)),
        ("uptime (s)", figures.uptime_secs.to_string()),
        ("connections", figures.connections.iter().map(|(_, n)| n).sum::<u64>().to_string()),
        ("HTTP clients", state.clients.len().to_string()),
        ("subscriptions", router.subscription_count().to_string()),
        ("stored values", router.value_count().to_string()),
        ("messages in", figures.messages_in.to_string()),
        ("messages out", figures.messages_out.to_string()),
        ("HTTP requests", state.requests.total.to_string()),
    ];
    for (name, value) in rows {
        let _ = write!(page, "<tr><th>{name}</th><td>{}</td></tr>", html_escape(&value));
    }
    page.push_str("</table><h2>HTTP clients</h2><table><tr><th>name</th><th>latest pickup</th><th>queued</th></tr>");
    // Broker-wide counts above; names only from the caller's namespace.
    for client in state.clients.iter().filter(|c| c.namespace == namespace).take(1000) {
        let _ = write!(
            page,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            html_escape(&client.name),
            nice_datetime(client.latest_pickup),
            client.queued()
        );
    }
    let _ = write!(page, "</table><p>{}</p></body></html>", nice_datetime(unix));
    page
}

#[cfg(test)]
mod tests {
    use crate::auth::Identity;
    use crate::http::service::HttpConfig;
    use crate::http::service::test_broker::{Broker, user};

    #[test]
    fn the_status_page_names_only_the_callers_clients() {
        let mut broker = Broker::new(HttpConfig::default());
        let subscribe = |client: &str| {
            let body = format!("topic=a&client={client}");
            format!("POST /SUBSCRIBE HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}", body.len())
        };
        assert_eq!(broker.request_as(&subscribe("alices-client"), user("alice", false)).reply.status(), 200);
        assert_eq!(broker.request_as(&subscribe("public-client"), Ok(Identity::Anonymous)).reply.status(), 200);
        let (_, page) = broker.get_as("/STATUS", &Ok(Identity::Anonymous));
        assert!(page.contains("public-client") && !page.contains("alices-client"), "{page}");
        let (_, page) = broker.get_as("/STATUS", &user("alice", false));
        assert!(page.contains("alices-client") && !page.contains("public-client"), "{page}");
    }
}
